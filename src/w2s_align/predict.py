"""Predictions of a trained checkpoint: weak labels (prefix `weak`) and strong predictions (`pred`)."""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import pandas as pd

from w2s_align.io import PipelineError, read_split, write_parquet
from w2s_align.models import load_tfidf, load_transformer, read_meta

log = logging.getLogger(__name__)

ROW_COLUMNS = ["id", "split", "text", "text_pair", "gt_label"]


def load_predictor(model_file: str, meta_file: str, threads: int,
                   batch_size: int = 64) -> Callable[[pd.DataFrame], np.ndarray]:
    """A checkpoint the pipeline wrote, loaded once: rows (text, text_pair) -> P(class 1)."""
    from w2s_align.train import encode, joined_texts, predict_proba, setup_torch

    meta = read_meta(meta_file)
    if meta.get("kind") == "tfidf":
        vec, clf = load_tfidf(model_file, meta)
        return lambda df: clf.predict_proba(vec.transform(joined_texts(df)))[:, 1]
    if meta.get("kind") != "transformer":
        raise PipelineError(f"{meta_file}: unknown checkpoint kind {meta.get('kind')!r}")
    device = setup_torch(threads, int(meta.get("seed", 0)))
    model, tokenizer = load_transformer(model_file, meta)
    model.to(device)
    return lambda df: predict_proba(model, tokenizer, encode(tokenizer, df, int(meta["max_length"])), batch_size,
                                    device)


def predict_rows(model_file: str, meta_file: str, df: pd.DataFrame, threads: int, batch_size: int = 64) -> np.ndarray:
    """P(class 1) for each row of `df` from a checkpoint the pipeline wrote."""
    return load_predictor(model_file, meta_file, threads, batch_size)(df)


def write_predictions(model_file: str, meta_file: str, split_files: dict[str, str], out: str, prefix: str,
                      model_name: str, threads: int) -> None:
    """Predict every listed split and write one parquet: row columns + `<prefix>_p1`, `<prefix>_hard`
    and provenance (`<prefix>_model`, `<prefix>_config_hash`)."""
    meta = read_meta(meta_file)
    df = pd.concat([read_split(path, split, ROW_COLUMNS) for split, path in split_files.items()],
                   ignore_index=True)[ROW_COLUMNS]
    p1 = predict_rows(model_file, meta_file, df, threads)
    df[f"{prefix}_p1"] = p1
    df[f"{prefix}_hard"] = (p1 >= 0.5).astype("int64")
    df[f"{prefix}_model"] = model_name
    df[f"{prefix}_config_hash"] = meta["config_hash"]
    for split, part in df.groupby("split", sort=False):
        log.info("%s: %d rows, accuracy vs ground truth %.4f, %.1f%% predicted positive", split, len(part),
                 (part[f"{prefix}_hard"] == part["gt_label"]).mean(), 100 * part[f"{prefix}_hard"].mean())
    write_parquet(df, out)
