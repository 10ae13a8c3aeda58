"""Loading any classifier checkpoint the pipeline wrote (kind from its metadata) and labelling rows with
it."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd

from w2s_align.errors import PipelineError
from w2s_align.files import read_split
from w2s_align.models import classifier, tfidf  # noqa: F401  (register the classifier kinds)
from w2s_align.models.common import read_meta
from w2s_align.registry import CLASSIFIER_KINDS

log = logging.getLogger(__name__)

ROW_COLUMNS = ["id", "split", "text", "text_pair", "gt_label"]


def load_predictor(
    model_file: str,
    meta_file: str,
    threads: int,
    batch_size: int = 64,
    meta: dict | None = None,
    local_dir: str | None = None,
) -> Callable[[pd.DataFrame], np.ndarray]:
    """A checkpoint loaded once: rows (text, text_pair) -> P(class 1) (`meta`: its metadata, if already
    read; `local_dir`: the prepared folder of a LoRA checkpoint's GGUF or archive base)."""
    meta = meta if meta is not None else read_meta(meta_file)
    kind = meta.get("kind")
    if kind not in CLASSIFIER_KINDS:
        raise PipelineError(
            f"{meta_file}: unknown checkpoint kind {kind!r}; registered: {CLASSIFIER_KINDS.names()}"
        )
    device = None
    if CLASSIFIER_KINDS.trait(kind, "gpu", True):
        from w2s_align.device import setup_torch

        device = setup_torch(threads, int(meta.get("seed", 0)))
    extra = {"local_dir": local_dir} if local_dir else {}  # only pretrained models load from one
    model = CLASSIFIER_KINDS.get(kind).load(model_file, meta, device, **extra)
    return lambda df: model.predict_proba(df, batch_size)


def predict_rows(
    model_file: str, meta_file: str, df: pd.DataFrame, threads: int, batch_size: int = 64
) -> np.ndarray:
    """P(class 1) for each row of `df` from a checkpoint the pipeline wrote."""
    return load_predictor(model_file, meta_file, threads, batch_size)(df)


def labelled_rows(
    model_file: str,
    meta_file: str,
    split_files: dict[str, str],
    prefix: str,
    model_name: str,
    threads: int,
    local_dir: str | None = None,
) -> pd.DataFrame:
    """Rows of every listed split with `<prefix>_p1`, `<prefix>_hard` and provenance (`<prefix>_model`,
    `<prefix>_config_hash`); logs accuracy per split (`local_dir`: see load_predictor)."""
    meta = read_meta(meta_file)
    df = pd.concat(
        [read_split(path, split, ROW_COLUMNS) for split, path in split_files.items()], ignore_index=True
    )[ROW_COLUMNS]
    p1 = load_predictor(model_file, meta_file, threads, meta=meta, local_dir=local_dir)(df)
    df[f"{prefix}_p1"] = p1
    df[f"{prefix}_hard"] = (p1 >= 0.5).astype("int64")
    df[f"{prefix}_model"] = model_name
    df[f"{prefix}_config_hash"] = meta["config_hash"]
    for split, part in df.groupby("split", sort=False):
        log.info(
            "%s: %d rows, accuracy vs ground truth %.4f, %.1f%% predicted positive",
            split,
            len(part),
            (part[f"{prefix}_hard"] == part["gt_label"]).mean(),
            100 * part[f"{prefix}_hard"].mean(),
        )
    return df
