"""The workflow's view of a config: `Settings`, built once per workflow start from the merged config with the
defaults of specs.py (validate.load_settings checks it first), and the canonical settings strings that reach
rules as params. Every DAG-time helper (paths, validate, the cluster plan, workflow/rules/common.smk) reads
this object, never the raw config. Importable without Snakemake or torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from w2s_align.settings.specs import (  # noqa: F401  (the block specs are re-exported for the rules' params)
    CorpusSpec,
    Decoding,
    GoldSpec,
    MetricsSpec,
    ModelSpec,
    PreferenceSpec,
    PromptSpec,
    Resources,
    RunDefaults,
    ScorerData,
    Spec,
    Strategy,
    TaskData,
    TaskDefaults,
    TrainParams,
    canonical_json,
)

MODEL_ONLY_KEYS = ("train", "student", "resources")  # model keys that are not part of its identity
TASK_LISTS = (
    "weak_models",
    "strong_models",
    "student_strategies",
    "controls",
)  # a task's own, else top-level
# Control students of classification tasks, each trained like a naive W2S student (CONTROL_STRATEGY) and shown
# beside the W2S runs: strong-to-strong, every strong model supervised by itself trained on the weak model's
# rows (what a student gains from soft labels of a supervisor as strong as itself: regularisation, not W2S);
# weak-to-weak, every weak model that can be a student (not an ensemble) supervised by itself.
CONTROLS = ("strong-to-strong", "weak-to-weak")
CONTROL_STRATEGY = "naive"


@dataclass(frozen=True)
class TaskSettings:
    """One entry of `tasks:`, its blocks parsed and its model / strategy lists resolved."""

    name: str
    defaults: TaskDefaults  # kind, eval_samples
    weak_models: list[str]
    strong_models: list[str]
    student_strategies: list[str]
    controls: list[str]  # CONTROLS (classification tasks)
    max_length: int | None
    scorer: str | None  # generation: the evaluation scorer
    reference_lm: str | None  # generation: perplexity under this model
    data: TaskData | None  # classification
    corpus: CorpusSpec | None  # generation
    gold: GoldSpec | None  # generation: generated gold continuations (corpus.gold)
    prompts: PromptSpec | None  # generation: evaluation prompts
    decoding: Decoding
    preferences: PreferenceSpec | None  # generation: the preference (DPO) track
    own_lists: tuple[str, ...]  # the TASK_LISTS the task sets itself (error messages name them)

    @property
    def kind(self) -> str:
        return self.defaults.kind

    @property
    def eval_samples(self) -> int:
        return self.defaults.eval_samples


@dataclass(frozen=True)
class ModelSettings:
    """One entry of `models:`: its identity, its training settings per role and its cluster request."""

    name: str
    spec: ModelSpec
    train: TrainParams  # as weak model or ceiling
    student: TrainParams  # as W2S student: `train` with the `student` overrides
    resources: Resources
    overrides: dict[str, Any]  # its raw `train` block, under which a task's preferences.train lies (DPO)


@dataclass(frozen=True)
class ScorerSettings:
    """One entry of `scorers:`; `entry` is the whole block (kinds have their own options)."""

    name: str
    entry: dict[str, Any]
    data: ScorerData | None  # trained scorers
    train: TrainParams  # trained scorers: their own, not their model's

    @property
    def kind(self) -> str:
        return self.entry["kind"]

    @property
    def model(self) -> str | None:
        return self.entry.get("model")


@dataclass(frozen=True)
class Settings:
    """A whole config read once: run-level settings, tasks, models, strategies, scorers and metrics."""

    run: RunDefaults
    tasks: dict[str, TaskSettings]
    models: dict[str, ModelSettings]
    strategies: dict[str, Strategy]
    scorers: dict[str, ScorerSettings]
    metrics: MetricsSpec
    dpo: dict[tuple[str, str], TrainParams]  # (preference task, model) -> its `train` under preferences.train

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Settings:
        """Parse a (schema-valid) merged config with the defaults of specs.py."""
        run = RunDefaults.from_dict(
            {k: v for k, v in config.items() if k in RunDefaults.__dataclass_fields__}
        )
        top = {key: config.get(key, getattr(run, key, [])) for key in TASK_LISTS}
        tasks = {name: _task(name, block, top) for name, block in config["tasks"].items()}
        models = {name: _model(name, block) for name, block in config["models"].items()}
        dpo = {
            (task.name, model): TrainParams.from_dict({**models[model].overrides, **task.preferences.train})
            for task in tasks.values()
            if task.preferences
            for model in models
        }
        scorers = {
            name: ScorerSettings(
                name,
                entry,
                ScorerData.from_dict(entry["data"]) if "data" in entry else None,
                TrainParams.from_dict(entry.get("train")),
            )
            for name, entry in run.scorers.items()
        }
        return cls(
            run,
            tasks,
            models,
            {name: Strategy.from_dict(block) for name, block in run.strategies.items()},
            scorers,
            MetricsSpec.from_dict(config.get("metrics")),
            dpo,
        )

    # --- derived lists
    # -----------------------------------------------------------------------------------------

    def active_tasks(self) -> list[str]:
        """The tasks to run: `only` (from the command line, e.g. --config only=[toxicity]) or all, sorted."""
        return sorted(self.run.only) if self.run.only else sorted(self.tasks)

    def tasks_of(self, kind: str) -> list[str]:
        return [t for t in self.active_tasks() if self.tasks[t].kind == kind]

    def ladder_tasks(self) -> list[str]:
        """Classification tasks with several strong models: a figure of their PGR against model size."""
        return [t for t in self.tasks_of("classification") if len(self.tasks[t].strong_models) > 1]

    def preference_tasks(self) -> list[str]:
        return [t for t in self.tasks_of("generation") if self.tasks[t].preferences]

    def preference_policies(self, task: str) -> list[str]:
        """The strong models the preference track trains: its own list, else the task's strong_models."""
        return self.tasks[task].preferences.strong_models or self.tasks[task].strong_models

    def student_runs(self, task: str) -> list[tuple[str, str, str]]:
        """(weak, strong, strategy) of every student of a task: each weak x strong x strategy, then the
        controls (classification), each run once."""
        spec = self.tasks[task]
        runs = [
            (w, s, x) for w in spec.weak_models for s in spec.strong_models for x in spec.student_strategies
        ]
        if spec.kind == "classification":
            if "strong-to-strong" in spec.controls:
                runs += [(s, s, CONTROL_STRATEGY) for s in spec.strong_models]
            if "weak-to-weak" in spec.controls:
                runs += [
                    (w, w, CONTROL_STRATEGY)
                    for w in spec.weak_models
                    if self.models[w].spec.kind != "ensemble"
                ]
        return list(dict.fromkeys(runs))

    def control(self, task: str, weak: str, strong: str) -> str:
        """Which control a run is ("" for a weak-to-strong run): a model supervising itself is
        strong-to-strong when it is one of the task's strong models, else weak-to-weak."""
        if weak != strong:
            return ""
        return CONTROLS[0] if strong in self.tasks[task].strong_models else CONTROLS[1]

    def resources(self, model: str | None) -> Resources:
        """The cluster request of a job running `model` (None: a job without a model gets the defaults)."""
        return self.models[model].resources if model else Resources()

    def hparams(self, model: str, role: str) -> TrainParams:
        """Training settings of `model` as weak, ceiling or student (student overrides apply)."""
        return self.models[model].student if role == "student" else self.models[model].train


def _task(name: str, block: dict[str, Any], top: dict[str, list[str]]) -> TaskSettings:
    corpus = CorpusSpec.from_dict(block["corpus"]) if "corpus" in block else None
    lists = {
        key: block[key] if block.get(key) is not None else top[key] for key in TASK_LISTS
    }  # own [] is a choice
    return TaskSettings(
        name,
        TaskDefaults.from_dict({k: v for k, v in block.items() if k in TaskDefaults.__dataclass_fields__}),
        **lists,
        max_length=block.get("max_length"),
        scorer=block.get("scorer"),
        reference_lm=block.get("reference_lm"),
        data=TaskData.from_dict(block["data"]) if "data" in block else None,
        corpus=corpus,
        gold=GoldSpec.from_dict(corpus.gold) if corpus and corpus.gold else None,
        prompts=PromptSpec.from_dict(block["prompts"]) if "prompts" in block else None,
        decoding=Decoding.from_dict(block.get("decoding")),
        preferences=PreferenceSpec.from_dict(block["preferences"]) if block.get("preferences") else None,
        own_lists=tuple(key for key in TASK_LISTS if block.get(key)),
    )


def _model(name: str, block: dict[str, Any]) -> ModelSettings:
    train = block.get("train", {})
    return ModelSettings(
        name,
        ModelSpec.from_dict({k: v for k, v in block.items() if k not in MODEL_ONLY_KEYS}),
        TrainParams.from_dict(train),
        TrainParams.from_dict({**train, **block.get("student", {})}),
        Resources.from_dict(block.get("resources")),
        train,
    )


# --- the rules' params (canonical strings) and inputs, read from Settings
# -------------------------------------


def canonical(spec_class: type[Spec], block: dict[str, Any] | None) -> str:
    return spec_class.from_dict(block).canonical()


def model_spec(settings: Settings, name: str) -> str:
    """The model's identity and architecture (no training settings, no cluster request)."""
    return settings.models[name].spec.canonical()


def train_hparams(settings: Settings, name: str, role: str) -> str:
    """Training settings of `name` as weak, ceiling or student (student overrides apply)."""
    return settings.hparams(name, role).canonical()


def dpo_hparams(settings: Settings, task: str, name: str) -> str:
    """Training settings of `name` under DPO: its `train`, overridden by the task's preferences.train."""
    return settings.dpo[task, name].canonical()


def decoding(settings: Settings, task: str) -> str:
    return settings.tasks[task].decoding.canonical()


def bootstrap_resamples(settings: Settings) -> int:
    return settings.metrics.bootstrap


def tasks_of(settings: Settings, kind: str) -> list[str]:
    return settings.tasks_of(kind)


def preference_tasks(settings: Settings) -> list[str]:
    return settings.preference_tasks()


def is_local(source: str) -> bool:
    return not source.startswith("hf:")
