"""The workflow's view of a config: schema validation with one-line errors, cross-field checks, and the
canonical settings strings that reach rules as params. Importable without Snakemake or torch, so every
check is a millisecond unit test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from w2s_align.specs import (CLASSIFICATION_ONLY, CorpusSpec, Decoding, MetricsSpec, ModelSpec, PromptSpec, Resources,
                             RunDefaults, ScorerData, Spec, TaskData,
                             Strategy, TaskDefaults, TrainParams, canonical_json)

MODEL_ONLY_KEYS = ("train", "student", "resources")  # model keys that are not part of its identity


class ConfigError(ValueError):
    """A config value that cannot work; the message is one line naming the key path."""


def validate(config: dict[str, Any], schema_file: str | Path) -> None:
    """JSON-schema validation; the most relevant error becomes one ConfigError line."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_file).read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        message = " ".join(error.message.split())
        message = message if len(message) <= 300 else f"{message[:200]} ... {message[-95:]}"  # the reason ends it
        raise ConfigError(f"config {path}: {message}")


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
    if own:
        return own
    return config[key] if key in config else getattr(run_settings(config), key)


def active_tasks(config: dict[str, Any]) -> list[str]:
    """The tasks to run: `only` (from the command line, e.g. --config only=[toxicity]) or all, sorted."""
    only = run_settings(config).only
    return sorted(only) if only else sorted(config["tasks"])


def tasks_of(config: dict[str, Any], kind: str) -> list[str]:
    return [t for t in active_tasks(config) if task_kind(config, t) == kind]


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


# --- cross-field checks ------------------------------------------------------------------------


def _fail(path: str, message: str) -> None:
    raise ConfigError(f"config {path}: {message}")


def check_models(config: dict[str, Any]) -> None:
    from w2s_align.registry import CLASSIFIER_KINDS, LM_KINDS

    kinds = sorted(set(CLASSIFIER_KINDS.names()) | set(LM_KINDS.names()) | {"ensemble"})
    for name, model in config["models"].items():
        if model["kind"] not in kinds:
            _fail(f"models.{name}.kind", f"unknown kind {model['kind']!r}; registered kinds: {kinds}")
        if model["kind"] == "pretrained" and "path" not in model:
            _fail(f"models.{name}", "kind 'pretrained' needs a `path`")
        if model["kind"] == "ensemble":
            members = model.get("members", [])
            bad = [m for m in members if m not in config["models"] or config["models"][m]["kind"] == "ensemble"]
            if len(members) < 2 or bad:
                _fail(f"models.{name}", "an ensemble needs two or more non-ensemble member models defined under "
                      f"`models` (bad: {bad or members})")
            if any(name in task_list(config, t, "strong_models") for t in config["tasks"]):
                _fail("strong_models", f"{name!r} is an ensemble, which can only be a weak model")


def check_task(config: dict[str, Any], name: str) -> None:
    from w2s_align.registry import CLASSIFIER_KINDS, CORPUS_FORMATS, LM_KINDS, LOSSES

    task = config["tasks"][name]
    generation = task_kind(config, name) == "generation"
    where = lambda key: f"tasks.{name}.{key}" if task.get(key) else key  # noqa: E731  (own list, or top-level)
    for role in ("weak_models", "strong_models"):
        unknown = [m for m in task_list(config, name, role) if m not in config["models"]]
        if unknown:
            _fail(where(role), f"unknown model(s) {unknown}; defined models: {sorted(config['models'])}")
        kinds = LM_KINDS if generation else CLASSIFIER_KINDS
        allowed = kinds.names() + ([] if generation or role == "strong_models" else ["ensemble"])
        bad = [m for m in task_list(config, name, role) if config["models"][m]["kind"] not in allowed]
        if bad:
            _fail(where(role), f"{bad} cannot be used here: a {task_kind(config, name)} task's "
                  f"{role} must be of kind {allowed} (set the task's own {role})")
    strategies = run_settings(config).strategies
    for strategy_name in task_list(config, name, "student_strategies"):
        if strategy_name not in strategies:
            _fail(where("student_strategies"), f"unknown strategy {strategy_name!r}; defined: "
                  f"{sorted(strategies)}")
        spec = Strategy.from_dict(strategies[strategy_name])
        if spec.loss not in LOSSES:
            _fail(f"strategies.{strategy_name}.loss", f"unknown loss {spec.loss!r}; registered: {LOSSES.names()}")
        if (spec.best_of is None) != (spec.selector is None):
            _fail(f"strategies.{strategy_name}", "best_of and selector go together")
        if not generation and spec.best_of is not None:
            _fail(f"tasks.{name}", f"strategy {strategy_name!r} (best-of-N) applies to generation tasks only")
        if generation:
            unsupported = sorted(k for k in spec.non_defaults() if k in CLASSIFICATION_ONLY)
            if unsupported:
                _fail(f"tasks.{name}", f"strategy {strategy_name!r} sets {unsupported}, which only apply to "
                      "classification; give the task its own student_strategies")
            if spec.selector is not None:
                check_scorer(config, spec.selector, f"strategies.{strategy_name}.selector")
                if spec.selector == task["scorer"] and "oracle" not in strategy_name:
                    _fail(f"strategies.{strategy_name}", f"selecting with the evaluation scorer {task['scorer']!r} "
                          "is an oracle; name the strategy so it says 'oracle' (e.g. best-of-4-oracle), or select "
                          "with a weak scorer")
    if not generation:
        if is_local(task["data"]["source"]) and not Path(task["data"]["source"]).is_file():
            _fail(f"tasks.{name}.data.source", f"data file not found: {task['data']['source']}")
        return
    reference = task["reference_lm"]
    if reference not in config["models"] or config["models"][reference]["kind"] != "pretrained":
        _fail(f"tasks.{name}.reference_lm", f"{reference!r} is not a pretrained model under `models`")
    check_scorer(config, task["scorer"], f"tasks.{name}.scorer")
    if task["corpus"].get("format", "rtp") not in CORPUS_FORMATS:
        _fail(f"tasks.{name}.corpus.format", f"unknown format {task['corpus']['format']!r}; registered: "
              f"{CORPUS_FORMATS.names()}")
    for key in ("corpus", "prompts"):
        source = task[key]["source"]
        if is_local(source) and not Path(source).is_file():
            _fail(f"tasks.{name}.{key}.source", f"data file not found: {source}")


def check_scorer(config: dict[str, Any], name: str, path: str) -> None:
    from w2s_align.registry import SCORERS

    scorers = run_settings(config).scorers
    if name not in scorers:
        _fail(path, f"unknown scorer {name!r}; defined: {sorted(scorers)}")
    scorer = scorers[name]
    if scorer["kind"] not in SCORERS:
        _fail(f"scorers.{name}.kind", f"unknown scorer kind {scorer['kind']!r}; registered: {SCORERS.names()}")
    if not SCORERS.trait(scorer["kind"], "checkpoint", False):
        import inspect

        params = inspect.signature(SCORERS.get(scorer["kind"])).parameters.values()
        allowed = sorted(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        unknown = sorted(set(scorer) - {"kind", *allowed})
        if unknown and not any(p.kind is p.VAR_KEYWORD for p in params):
            _fail(f"scorers.{name}", f"unknown option(s) {unknown} for scorer kind {scorer['kind']!r}; allowed: "
                  f"{allowed}")
    else:
        from w2s_align.registry import CLASSIFIER_KINDS

        unknown = sorted(set(scorer) - {"kind", "model", "max_length", "train", "data"})
        if unknown:
            _fail(f"scorers.{name}", f"unknown option(s) {unknown} for a trained scorer; allowed: data, max_length, "
                  "model, train")
        model = scorer.get("model")
        if model not in config["models"] or config["models"][model]["kind"] not in CLASSIFIER_KINDS:
            problem = "unknown model" if model not in config["models"] else "not a classifier model:"
            _fail(f"scorers.{name}.model", f"{problem} {model!r} (a trained scorer needs a model of kind "
                  f"{CLASSIFIER_KINDS.names()})")


def check_config(config: dict[str, Any]) -> None:
    """Cross-field checks the schema cannot express; each error is one line naming the offending key."""
    from w2s_align.catalog import load_builtins

    load_builtins()
    only = run_settings(config).only
    unknown = [t for t in only if t not in config["tasks"]]
    if unknown:
        _fail("only", f"unknown task(s) {unknown}; defined tasks: {sorted(config['tasks'])}")
    check_models(config)
    for name in config["tasks"]:
        check_task(config, name)


def run_identity(config: dict[str, Any], task: str, weak: str, strong: str, strategy_name: str, seed: str) -> str:
    """Identity columns of a run's metric rows."""
    return canonical_json({"task": task, "weak_model": weak, "strong_model": strong, "strategy": strategy_name,
                           "seed": int(seed)})


def params_string(obj: Any) -> str:
    """Canonical JSON of a plain value (for params that are not a spec)."""
    return canonical_json(obj)


# --- what the workflow builds --------------------------------------------------------------------


def metric_files(config: dict[str, Any]) -> list[str]:
    """Every run's metrics file of the active tasks (classification: seed<k>.parquet, generation:
    seed<k>.toxicity.parquet)."""
    files = []
    for task in active_tasks(config):
        suffix = ".toxicity" if task_kind(config, task) == "generation" else ""
        for weak in task_list(config, task, "weak_models"):
            for strong in task_list(config, task, "strong_models"):
                for strategy_name in task_list(config, task, "student_strategies"):
                    files += [f"results/{task}/metrics/{weak}__{strong}/{strategy_name}/seed{seed}{suffix}.parquet"
                              for seed in run_settings(config).seeds]
    return files


def gpus(config: dict[str, Any], model: str | None) -> int:
    """GPUs of a job running `model`: none for kinds registered with gpu=False (TF-IDF) or without a model."""
    from w2s_align.registry import CLASSIFIER_KINDS

    if model is None:
        return 0
    kind = config["models"][model]["kind"]
    return int(CLASSIFIER_KINDS.trait(kind, "gpu", True)) if kind in CLASSIFIER_KINDS else 1


def scorer_model(config: dict[str, Any], scorer: str) -> str | None:
    """The classifier behind a scorer that the pipeline trains; None for API and hub scorers."""
    from w2s_align.registry import SCORERS

    spec = run_settings(config).scorers[scorer]
    return spec.get("model") if SCORERS.trait(spec["kind"], "checkpoint", False) else None


def scorer_gpus(config: dict[str, Any], scorer: str) -> int:
    from w2s_align.registry import SCORERS

    model = scorer_model(config, scorer)
    return gpus(config, model) if model else int(SCORERS.trait(run_settings(config).scorers[scorer]["kind"], "gpu",
                                                                  False))


def student_targets(config: dict[str, Any], task: str, weak: str, strategy_name: str, seed: str) -> str:
    """The weak continuations a generation student learns from: one sample each, or the best of N."""
    spec = strategy(config, strategy_name)
    name = f"best_of_{spec.best_of}_{spec.selector}" if spec.best_of else "weak_generations"
    return f"results/{task}/weak/{weak}/seed{seed}/{name}.parquet"


def toxicity_inputs(config: dict[str, Any], task: str, weak: str, strong: str, strategy_name: str,
                    seed: str) -> dict[str, str]:
    """Generations, scores and perplexities of weak / base / w2s / ceiling (+ the scorer's held-out AUROC)."""
    scorer = config["tasks"][task]["scorer"]
    runs = {"weak": f"weak/{weak}/seed{seed}", "base": f"base/{strong}/seed{seed}",
            "w2s": f"student/{weak}__{strong}/{strategy_name}/seed{seed}", "ceiling": f"ceiling/{strong}/seed{seed}"}
    files = {}
    for role, run in runs.items():
        files |= {f"{role}_generations": f"results/{task}/{run}/generations.parquet",
                  f"{role}_scores": f"results/{task}/{run}/toxicity_{scorer}.parquet",
                  f"{role}_perplexity": f"results/{task}/{run}/perplexity.parquet"}
    if scorer_model(config, scorer):
        files["scorer_heldout"] = f"results/scorers/{scorer}/heldout.parquet"
    return files
