"""Weak-to-strong strategies beyond the loss: confidence filtering of weak labels and weak ensembles.
(Losses: train/losses.py; bootstrapping: train/classify.py; settings: specs.Strategy.)"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from w2s_align.io import PipelineError, read_split, short_hash, write_parquet

log = logging.getLogger(__name__)


def confidence_mask(p1: np.ndarray, threshold: float | None = None, top_fraction: float | None = None) -> np.ndarray:
    """Rows whose weak label is confident: max(p, 1-p) >= threshold and/or among the top fraction
    of their weak class (round(fraction * n_class) rows of each class, so the weak labels' class
    prior is kept even when the weak model is more confident on one class; ties by position)."""
    conf = np.maximum(p1, 1 - p1)
    keep = np.ones(len(p1), dtype=bool)
    if threshold is not None:
        keep &= conf >= threshold
    if top_fraction is not None:
        top = np.zeros(len(p1), dtype=bool)
        for rows in (np.flatnonzero(p1 < 0.5), np.flatnonzero(p1 >= 0.5)):
            top[rows[np.argsort(-conf[rows], kind="stable")[: int(round(top_fraction * len(rows)))]]] = True
        keep &= top
    return keep


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
    members = {m: pd.concat([read_split(path, s, cols) for s in ("weak_label", "val", "test")], ignore_index=True)
               for m, path in member_files.items()}
    df = average_weak_labels(members)
    df["weak_model"] = name
    df["weak_config_hash"] = short_hash(",".join(f"{m}:{f['weak_config_hash'].iloc[0]}" for m, f in members.items()))
    for split, part in df.groupby("split", sort=False):
        log.info("%s: %d rows, ensemble of %s, accuracy %.4f", split, len(part), list(members),
                 (part["weak_hard"] == part["gt_label"]).mean())
    write_parquet(df, out)
