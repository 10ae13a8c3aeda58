"""Weak-to-strong strategies beyond the loss: confidence filtering of weak labels (ensembles:
infer/weak_labels.py).
(Losses: train/losses.py; bootstrapping: train/classify.py; settings: specs.Strategy.)"""

from __future__ import annotations

import numpy as np


def confidence_mask(
    p1: np.ndarray, threshold: float | None = None, top_fraction: float | None = None
) -> np.ndarray:
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
