"""The workflow's view of a config: schema validation with one-line errors, reading it with the defaults of
specs.py, and the canonical settings strings that reach rules as params. Importable without Snakemake or
torch (cross-field checks: checks.py; what the workflow builds: layout.py)."""

from __future__ import annotations

from typing import Any

from w2s_align.settings.specs import (  # noqa: F401  (the block specs are re-exported for the rules' params)
    CorpusSpec, Decoding, MetricsSpec, ModelSpec, PreferenceSpec, PromptSpec, Resources, RunDefaults, ScorerData, Spec,
    Strategy, TaskData, TaskDefaults, TrainParams, canonical_json)

MODEL_ONLY_KEYS = ("train", "student", "resources")  # model keys that are not part of its identity


# --- reading the config with the defaults of specs.py -------------------------------------------


def run_settings(config: dict[str, Any]) -> RunDefaults:
    return RunDefaults.from_dict({k: v for k, v in config.items() if k in RunDefaults.__dataclass_fields__})


def task_settings(config: dict[str, Any], task: str) -> TaskDefaults:
    block = config["tasks"][task]
    return TaskDefaults.from_dict({k: v for k, v in block.items() if k in TaskDefaults.__dataclass_fields__})


def task_kind(config: dict[str, Any], task: str) -> str:
    return task_settings(config, task).kind


def task_list(config: dict[str, Any], task: str, key: str) -> list[str]:
    """A task's weak_models / strong_models / student_strategies: its own list, else the top-level one."""
    own = config["tasks"][task].get(key)
    if own is not None:  # a task's own [] (no students of that kind) is a choice, not a fallback
        return own
    return config[key] if key in config else getattr(run_settings(config), key)


def active_tasks(config: dict[str, Any]) -> list[str]:
    """The tasks to run: `only` (from the command line, e.g. --config only=[toxicity]) or all, sorted."""
    only = run_settings(config).only
    return sorted(only) if only else sorted(config["tasks"])


def tasks_of(config: dict[str, Any], kind: str) -> list[str]:
    return [t for t in active_tasks(config) if task_kind(config, t) == kind]


def preferences(config: dict[str, Any], task: str) -> PreferenceSpec | None:
    """A generation task's preference (DPO) track, or None."""
    block = config["tasks"][task].get("preferences")
    return PreferenceSpec.from_dict(block) if block else None


def preference_policies(config: dict[str, Any], task: str) -> list[str]:
    """The strong models the preference track trains: its own list, else the task's strong_models."""
    return preferences(config, task).strong_models or task_list(config, task, "strong_models")


def preference_tasks(config: dict[str, Any]) -> list[str]:
    return [t for t in tasks_of(config, "generation") if preferences(config, t)]


def model_block(config: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in config["models"][name].items() if k not in MODEL_ONLY_KEYS}


def model_spec(config: dict[str, Any], name: str) -> str:
    """The model's identity and architecture (no training settings, no cluster request)."""
    return ModelSpec.from_dict(model_block(config, name)).canonical()


def train_hparams(config: dict[str, Any], name: str, role: str) -> str:
    """Training settings of `name` as weak, ceiling or student (student overrides apply)."""
    model = config["models"][name]
    return TrainParams.from_dict({**model.get("train", {}), **(model.get("student", {}) if role == "student" else {})
                                  }).canonical()


def dpo_hparams(config: dict[str, Any], task: str, name: str) -> str:
    """Training settings of `name` under DPO: its `train`, overridden by the task's preferences.train."""
    return TrainParams.from_dict({**config["models"][name].get("train", {}), **preferences(config, task).train
                                  }).canonical()


def resources(config: dict[str, Any], name: str | None) -> Resources:
    return Resources.from_dict(config["models"][name].get("resources") if name else None)


def strategy(config: dict[str, Any], name: str) -> Strategy:
    return Strategy.from_dict(run_settings(config).strategies[name])


def canonical(spec_class: type[Spec], block: dict[str, Any] | None) -> str:
    return spec_class.from_dict(block).canonical()


def decoding(config: dict[str, Any], task: str) -> str:
    return canonical(Decoding, config["tasks"][task].get("decoding"))


def bootstrap_resamples(config: dict[str, Any]) -> int:
    return MetricsSpec.from_dict(config.get("metrics")).bootstrap


def is_local(source: str) -> bool:
    return not source.startswith("hf:")
