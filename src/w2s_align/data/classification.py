"""Classification data: clean a source of labelled texts and cut its splits (a task's weak_train / weak_label
/ val / test, a trained scorer's train / val / test)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from w2s_align.data.sources import label_strings, load_source
from w2s_align.errors import PipelineError
from w2s_align.files import short_hash, write_parquet
from w2s_align.settings.specs import ScorerData, TaskData

log = logging.getLogger(__name__)

SPLITS = ("weak_train", "weak_label", "val", "test")
SCORER_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class LabelledData:
    """Labelled texts to clean and split: where they are, how to read them, and the rows of each split in
    `splits`. "test" is cut first (with `test_seed`, the same for every run seed), then the others in order
    (with the run seed)."""

    source: str
    text_fields: list[str]
    label_field: str
    label_map: dict[str, int]
    sizes: dict[str, int]
    splits: tuple[str, ...]
    group_field: str | None = None
    hf_split: str = "train"
    test_seed: int = 0


def labelled(data: TaskData | ScorerData | LabelledData) -> LabelledData:
    """The labelled data of a classification task's `data` block (splits SPLITS) or of a trained scorer's
    (SCORER_SPLITS)."""
    if isinstance(data, LabelledData):
        return data
    splits, group = (SPLITS, data.group_field) if isinstance(data, TaskData) else (SCORER_SPLITS, None)
    return LabelledData(
        source=data.source,
        text_fields=data.text_fields,
        label_field=data.label_field,
        label_map=data.label_map,
        sizes=dict(data.sizes),
        splits=splits,
        group_field=group,
        hf_split=data.hf_split,
        test_seed=data.test_seed,
    )


def _normalize(text: pd.Series) -> pd.Series:
    """Key for duplicate and label-conflict detection: lower-case, whitespace collapsed."""
    return text.str.lower().str.replace(r"\s+", " ", regex=True)


def clean(df: pd.DataFrame, spec: TaskData | ScorerData | LabelledData) -> pd.DataFrame:
    """Strip, drop empty texts, map labels, drop prompts carrying both labels, dedupe; log each drop."""
    spec = labelled(spec)
    needed = [*spec.text_fields, spec.label_field] + ([spec.group_field] if spec.group_field else [])
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise PipelineError(f"{spec.source}: missing column(s) {missing}; columns are {list(df.columns)}")
    n0 = len(df)
    out = pd.DataFrame(index=df.index)
    for i, field in enumerate(spec.text_fields):
        out["text" if i == 0 else "text_pair"] = df[field].astype("string").str.strip()
    if "text_pair" not in out:
        out["text_pair"] = pd.Series(pd.NA, index=df.index, dtype="string")
    text_cols = ["text", "text_pair"] if len(spec.text_fields) > 1 else ["text"]
    empty = out[text_cols].isna().any(axis=1) | (out[text_cols] == "").any(axis=1)
    raw_label = label_strings(df[spec.label_field])
    no_label = raw_label.isna()
    out = out[~empty & ~no_label]
    raw_label = raw_label[out.index]
    unknown = sorted(set(raw_label) - set(spec.label_map))
    if unknown:
        raise PipelineError(
            f"{spec.source}: label value(s) {unknown[:10]} in column {spec.label_field!r} are not in "
            f"label_map "
            f"{sorted(spec.label_map)}"
        )
    out["gt_label"] = raw_label.map(spec.label_map).astype("int64")
    out["group"] = df.loc[out.index, spec.group_field].astype("string") if spec.group_field else pd.NA
    key = _normalize(out["text"]) + "\x1f" + _normalize(out["text_pair"].fillna(""))
    conflicting = key.map(out.groupby(key)["gt_label"].nunique()) > 1
    kept = out[~conflicting]
    dup = key[~conflicting].duplicated()
    kept = kept[~dup.values]
    log.info(
        "cleaning %s: %d rows read, %d empty text, %d missing label, %d with both labels, %d duplicates, %d "
        "kept",
        spec.source,
        n0,
        int(empty.sum()),
        int((no_label & ~empty).sum()),
        int(conflicting.sum()),
        int(dup.sum()),
        len(kept),
    )
    if kept.empty:
        raise PipelineError(f"{spec.source}: no rows left after cleaning")
    kept = kept.reset_index(drop=True)
    kept.insert(
        0,
        "id",
        [
            short_hash(a + "\x1f" + (b if isinstance(b, str) else ""))
            for a, b in zip(kept["text"], kept["text_pair"])
        ],
    )
    return kept


def _take(groups: np.ndarray, sizes: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Take whole groups in the given order until `target` rows are reached (none for a target of 0)."""
    if target <= 0:
        return groups[:0], groups
    cut = int(np.searchsorted(np.cumsum(sizes), target, side="left")) + 1
    return groups[:cut], groups[cut:]


def split(df: pd.DataFrame, spec: TaskData | ScorerData | LabelledData, seed: int) -> dict[str, pd.DataFrame]:
    """Cut the splits. The test pool depends only on `test_seed`; the rest on the run `seed`.

    Rows of one group (e.g. one legal question) always land in one split.
    """
    spec = labelled(spec)
    need = sum(spec.sizes[s] for s in spec.splits)
    if need > len(df):
        raise PipelineError(
            f"{spec.source}: split sizes {dict(spec.sizes)} need {need} rows but only {len(df)} remain "
            f"after cleaning"
        )
    groups = df["group"].fillna(df["id"]) if spec.group_field else df["id"]
    counts = groups.value_counts().sort_index()
    names, sizes = counts.index.to_numpy(), counts.to_numpy()
    order = np.random.default_rng(spec.test_seed).permutation(len(names))
    test_groups, rest = _take(names[order], sizes[order], spec.sizes["test"])
    rest_sizes = counts[rest].to_numpy()
    order = np.random.default_rng(seed).permutation(len(rest))
    rest, rest_sizes = rest[order], rest_sizes[order]
    assigned = {"test": test_groups}
    for name in (s for s in spec.splits if s != "test"):
        taken, rest = _take(rest, rest_sizes, spec.sizes[name])
        rest_sizes = rest_sizes[len(taken) :]
        assigned[name] = taken
    out = {}
    for name in (*(s for s in spec.splits if s != "test"), "test"):
        part = df[groups.isin(assigned[name])]
        if spec.group_field:  # whole groups overshoot the row target by at most one group
            part = (
                part.sample(n=min(len(part), spec.sizes[name]), random_state=seed) if name != "test" else part
            )
        part = part.sort_values("id").reset_index(drop=True)
        classes = part["gt_label"].nunique()
        if classes < 2 and spec.sizes[name] > 0:
            raise PipelineError(
                f"{spec.source}: split {name!r} ({len(part)} rows) has only one class; use more rows or "
                f"other sizes"
            )
        out[name] = part.assign(split=name)
        log.info("split %-10s %5d rows, %.1f%% positive", name, len(part), 100 * part["gt_label"].mean())
    return out


def make_splits(spec_json: str, seed: int, outputs: dict[str, str]) -> None:
    spec = TaskData.from_json(spec_json)
    parts = split(clean(load_source(spec.source, spec.hf_split), spec), spec, seed)
    for name, part in parts.items():
        write_parquet(part, outputs[name])
