"""Weak-label stages: the weak model labels the held-out weak_label split (and val, test), and an ensemble
supervisor averages its members' weak labels. Their own rules, reading saved checkpoints: editing this module
reruns the weak labels and what learns from them, never a weak model's training or a ceiling."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from w2s_align.errors import PipelineError
from w2s_align.files import read_split, short_hash, write_parquet
from w2s_align.models.checkpoint import labelled_rows

log = logging.getLogger(__name__)


def write_weak_labels(
    model_file: str,
    meta_file: str,
    split_files: dict[str, str],
    out: str,
    model_name: str,
    threads: int,
    local_dir: str | None = None,
) -> None:
    """One parquet of row columns + weak_p1 (the soft label), weak_hard, weak_model, weak_config_hash."""
    rows = labelled_rows(model_file, meta_file, split_files, "weak", model_name, threads, local_dir)
    write_parquet(rows, out)


def average_weak_labels(members: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Mean of several supervisors' soft labels on the same rows (joined by id)."""
    frames = list(members.values())
    ids = [set(f["id"]) for f in frames]
    if any(s != ids[0] for s in ids[1:]):
        raise PipelineError(f"ensemble members {list(members)} labelled different rows")
    base = frames[0].set_index("id")
    p1 = np.mean([f.set_index("id").loc[base.index, "weak_p1"].to_numpy() for f in frames], axis=0)
    out = base.reset_index()
    out["weak_p1"] = p1
    out["weak_hard"] = (p1 >= 0.5).astype("int64")
    return out


def ensemble_labels(member_files: dict[str, str], out: str, name: str) -> None:
    """Write an ensemble supervisor's weak labels: its members' soft labels averaged."""
    cols = ["id", "split", "text", "text_pair", "gt_label", "weak_p1", "weak_config_hash"]
    members = {
        m: pd.concat([read_split(path, s, cols) for s in ("weak_label", "val", "test")], ignore_index=True)
        for m, path in member_files.items()
    }
    df = average_weak_labels(members)
    df["weak_model"] = name
    df["weak_config_hash"] = short_hash(
        ",".join(f"{m}:{f['weak_config_hash'].iloc[0]}" for m, f in members.items())
    )
    for split, part in df.groupby("split", sort=False):
        log.info(
            "%s: %d rows, ensemble of %s, accuracy %.4f",
            split,
            len(part),
            list(members),
            (part["weak_hard"] == part["gt_label"]).mean(),
        )
    write_parquet(df, out)
