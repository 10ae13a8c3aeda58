"""Registries: the one place where each kind of extension (loss, scorer, model kind, corpus format) is
looked up by the name a config uses. Standard library only, so the workflow can read it at DAG time."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Registry:
    """Name -> implementation (a function or class), with optional traits the workflow reads at DAG time
    (for example whether a model kind needs a GPU)."""

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, Any] = {}
        self._traits: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **traits: Any) -> Callable[[T], T]:
        """Decorator: `@LOSSES.register("xent")` above a function or class."""

        def add(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._entries[name] = obj
            self._traits[name] = traits
            return obj

        return add

    def get(self, name: str) -> Any:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.what} {name!r}; registered: {self.names()}") from None

    def trait(self, name: str, key: str, default: Any = None) -> Any:
        self.get(name)
        return self._traits[name].get(key, default)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


def unknown_options(cls: Callable, options: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(options `cls` does not take, the keyword arguments it does take); none are unknown if it takes
    **kwargs."""
    params = inspect.signature(cls).parameters.values()
    allowed = sorted(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return [], allowed
    return sorted(set(options) - set(allowed)), allowed


LOSSES = Registry("loss")  # train/losses.py
SCORERS = Registry("scorer kind")  # scoring/
CLASSIFIER_KINDS = Registry("classifier model kind")  # models/classifier.py, models/tfidf.py
LM_KINDS = Registry("language-model kind")  # models/causal_lm.py
CORPUS_FORMATS = Registry("corpus format")  # data/corpus.py


def published(kind: str | None) -> bool:
    """Whether a model kind has published weights (registered with published=True): it needs a `path`, its
    shape comes from its config.json, and it can be used untuned (base row, reference LM, generator) or under
    LoRA."""
    return any(
        kind in kinds and kinds.trait(kind, "published", False) for kinds in (CLASSIFIER_KINDS, LM_KINDS)
    )
