"""The `Scorer` base class and `score_texts`: deduplicated scoring of texts, cached by text hash."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from w2s_align.errors import PipelineError
from w2s_align.files import short_hash
from w2s_align.scoring.cache import ScoreCache, text_key
from w2s_align.settings.specs import canonical_json

log = logging.getLogger(__name__)


class Scorer:
    """Base class: maps texts to P(toxic) in [0, 1]. A new kind is a subclass registered with
    `@SCORERS.register(name)`; the config entry's keys (other than `kind`) are its constructor's arguments."""

    name: str = "scorer"

    def spec(self) -> dict[str, Any]:
        """Everything that determines the scores (never secrets); hashed into `identity`."""
        raise NotImplementedError

    def identity(self) -> str:
        """Stable id for the cache: short_hash of the canonical spec JSON."""
        return short_hash(canonical_json(self.spec()))

    def score_batch(self, texts: list[str]) -> np.ndarray:
        """P(toxic) in [0, 1], one per text."""
        raise NotImplementedError


def _check_texts(texts: list[str]) -> None:
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise PipelineError(f"text #{i} to score is {type(text).__name__} {text!r}, not a string")


def _check_scores(scorer: Scorer, scores: Any, n: int) -> np.ndarray:
    scores = np.asarray(scores, dtype="float64")
    if scores.shape != (n,):
        raise PipelineError(f"scorer {scorer.name} returned shape {scores.shape} for {n} texts")
    bad = ~np.isfinite(scores) | (scores < 0) | (scores > 1)
    if bad.any():
        raise PipelineError(
            f"scorer {scorer.name} returned {int(bad.sum())} scores outside [0, 1], e.g. {scores[bad][0]}"
        )
    return scores


def score_texts(scorer: Scorer, texts: list[str], cache_dir: str | None, batch_size: int = 64) -> np.ndarray:
    """Scores for texts (duplicates scored once; cached ones not rescored; new ones added to the cache after
    each batch so an interrupted job keeps what it paid for). cache_dir None = no cache. Logs how many came
    from cache. Empty (or whitespace-only) strings score 0.0 without calling the scorer (Perspective rejects
    empty text)."""
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise PipelineError(f"score batch_size must be >= 1, got {batch_size}")
    _check_texts(texts)
    row_keys = [text_key(t) if t.strip() else None for t in texts]
    by_key = {k: t for k, t in zip(row_keys, texts) if k is not None}
    cache = ScoreCache(cache_dir, scorer.identity()) if cache_dir is not None else None
    known = cache.lookup(list(by_key)) if cache is not None else {}
    missing = [k for k in by_key if k not in known]
    log.info(
        "%s: %d texts, %d unique non-empty, %d from cache, %d to score",
        scorer.name,
        len(texts),
        len(by_key),
        len(known),
        len(missing),
    )
    with tqdm(total=len(missing), desc=f"scoring ({scorer.name})", unit="text", leave=False) as bar:
        for start in range(0, len(missing), batch_size):
            keys = missing[start : start + batch_size]
            scores = _check_scores(scorer, scorer.score_batch([by_key[k] for k in keys]), len(keys))
            new = dict(zip(keys, scores.tolist()))
            if cache is not None:
                cache.add(new)
            known.update(new)
            bar.update(len(keys))
    return np.array([0.0 if k is None else known[k] for k in row_keys], dtype="float64")


# --- Hugging Face classifier -----------------------------------------------------------------
