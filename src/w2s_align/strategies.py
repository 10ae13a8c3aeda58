"""Weak-to-strong strategies: how a student uses weak labels (loss, filtering, bootstrapping) and
weak ensembles. Each piece is a small pure function or a frozen settings object."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from w2s_align.io import PipelineError, read_split, short_hash, write_parquet

log = logging.getLogger(__name__)

DEFAULT_ALPHA = {"xent": None, "logconf": 0.5, "product": 1.0}


@dataclass(frozen=True)
class Strategy:
    """One entry of `strategies:` in config.yaml (the defaults are the naive W2S baseline)."""

    loss: str = "xent"  # xent | logconf | product
    hard_labels: bool = False  # train on argmax weak labels instead of probabilities
    alpha: float | None = None  # logconf: final coefficient (0.5); product: weak-label exponent (1)
    beta: float = 1.0  # product: student exponent
    warmup_frac: float = 0.2  # logconf: fraction of training over which the coefficient ramps up
    buffer_size: int = 32  # logconf: recent predictions that set the prior-matching threshold
    confidence_threshold: float | None = None  # keep weak labels with max(p, 1-p) >= threshold
    top_fraction: float | None = None  # keep the most confident fraction of weak labels
    bootstrap_rounds: int = 0  # extra rounds: a fresh student learns from the previous one

    @classmethod
    def from_json(cls, text: str | None) -> "Strategy":
        return cls(**json.loads(text or "{}"))

    def loss_kwargs(self) -> dict:
        alpha = DEFAULT_ALPHA[self.loss] if self.alpha is None else self.alpha
        return {"name": self.loss, "alpha": alpha, "beta": self.beta, "warmup_frac": self.warmup_frac,
                "buffer_size": self.buffer_size}

    def describe(self) -> str:
        changed = {k: v for k, v in asdict(self).items() if v != getattr(Strategy, k)}
        return json.dumps(changed) if changed else "naive (cross-entropy on weak soft labels)"


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
