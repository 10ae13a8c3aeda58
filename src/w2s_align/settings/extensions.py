"""Every module that registers a built-in extension (loss, scorer, model kind, corpus format), imported at DAG
time so the workflow knows the registered names and traits. Stage modules import only what they use; a new
module that registers something is added here too. (A DAG-time module: no stage imports it, so editing this
list reruns nothing.)"""

from __future__ import annotations

import importlib

BUILTIN_MODULES = (
    "w2s_align.data.corpus",
    "w2s_align.models.causal_lm",
    "w2s_align.models.classifier",
    "w2s_align.models.tfidf",
    "w2s_align.scoring.scorers",
    "w2s_align.train.losses",
)


def load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
