"""Cross-field config checks the schema cannot express (registered names, model kinds per task kind, data
files, strategies per task kind). Each error is one ConfigError line naming the key path. Plain Python: unit
tested in milliseconds (tests/test_config.py). `load_settings` validates a config and reads it once into the
Settings object that the workflow uses throughout."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from w2s_align.errors import ConfigError
from w2s_align.registry import published
from w2s_align.settings.settings import CONTROL_STRATEGY, Settings, is_local
from w2s_align.settings.specs import SpecError

CLASSIFICATION_ONLY = (
    "loss",
    "hard_labels",
    "alpha",
    "beta",
    "warmup_frac",
    "buffer_size",
    "confidence_threshold",
    "top_fraction",
    "bootstrap_rounds",
)  # Strategy options that apply to classification only


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
        message = (
            message if len(message) <= 300 else f"{message[:200]} ... {message[-95:]}"
        )  # the reason ends it
        raise ConfigError(f"config {path}: {message}")


def load_settings(config: dict[str, Any], schema_file: str | Path) -> Settings:
    """Schema validation, the Settings object (once per workflow start) and the cross-field checks on it."""
    validate(config, schema_file)
    try:
        settings = Settings.from_config(config)
    except SpecError as error:
        raise ConfigError(f"config: {error}") from None
    check_config(settings)
    return settings


def _fail(path: str, message: str) -> None:
    raise ConfigError(f"config {path}: {message}")


def _kind(settings: Settings, model: str) -> str | None:
    return settings.models[model].spec.kind if model in settings.models else None


def _published_lm(settings: Settings, model: str) -> bool:
    from w2s_align.registry import LM_KINDS

    kind = _kind(settings, model)
    return kind in LM_KINDS and LM_KINDS.trait(kind, "published", False)


def check_models(settings: Settings) -> None:
    from w2s_align.registry import CLASSIFIER_KINDS, LM_KINDS

    kinds = sorted(set(CLASSIFIER_KINDS.names()) | set(LM_KINDS.names()) | {"ensemble"})
    for name, model in settings.models.items():
        spec = model.spec
        if spec.kind not in kinds:
            _fail(f"models.{name}.kind", f"unknown kind {spec.kind!r}; registered kinds: {kinds}")
        if published(spec.kind) and spec.path is None:
            _fail(f"models.{name}", f"kind {spec.kind!r} needs a `path`")
        local = [key for key in ("gguf_file", "archive") if getattr(spec, key)]
        if local and not published(spec.kind):
            _fail(
                f"models.{name}.{local[0]}", f"only pretrained models load from one, not kind {spec.kind!r}"
            )
        if len(local) > 1:
            _fail(f"models.{name}", "give `gguf_file` or `archive`, not both")
        for block, hp in (("train", model.train), ("student", model.student)):
            if hp.effective_batch_size is not None and hp.effective_batch_size % hp.batch_size:
                _fail(
                    f"models.{name}.{block}.effective_batch_size",
                    f"{hp.effective_batch_size} is not a multiple of batch_size {hp.batch_size}",
                )
        if spec.kind == "ensemble":
            members = spec.members
            bad = [m for m in members if _kind(settings, m) in (None, "ensemble")]
            if len(members) < 2 or bad:
                _fail(
                    f"models.{name}",
                    "an ensemble needs two or more non-ensemble member models defined under "
                    f"`models` (bad: {bad or members})",
                )
            if any(name in t.strong_models for t in settings.tasks.values()):
                _fail("strong_models", f"{name!r} is an ensemble, which can only be a weak model")


def check_task(settings: Settings, name: str) -> None:
    from w2s_align.registry import CLASSIFIER_KINDS, CORPUS_FORMATS, LM_KINDS, LOSSES

    task = settings.tasks[name]
    generation = task.kind == "generation"
    where = lambda key: f"tasks.{name}.{key}" if key in task.own_lists else key  # noqa: E731  (own list, or top-level)
    for role in ("weak_models", "strong_models"):
        unknown = [m for m in getattr(task, role) if m not in settings.models]
        if unknown:
            _fail(where(role), f"unknown model(s) {unknown}; defined models: {sorted(settings.models)}")
        kinds = LM_KINDS if generation else CLASSIFIER_KINDS
        allowed = kinds.names() + ([] if generation or role == "strong_models" else ["ensemble"])
        bad = [m for m in getattr(task, role) if _kind(settings, m) not in allowed]
        if bad:
            _fail(
                where(role),
                f"{bad} cannot be used here: a {task.kind} task's "
                f"{role} must be of kind {allowed} (set the task's own {role})",
            )
    strategies = settings.strategies
    if task.controls and not generation and CONTROL_STRATEGY not in strategies:
        _fail(
            where("controls"), f"controls train like the {CONTROL_STRATEGY!r} strategy, which is not defined"
        )
    for strategy_name in task.student_strategies:
        if strategy_name not in strategies:
            _fail(
                where("student_strategies"),
                f"unknown strategy {strategy_name!r}; defined: {sorted(strategies)}",
            )
        spec = strategies[strategy_name]
        if spec.dpo_weighting is not None:
            _fail(
                where("student_strategies"),
                f"{strategy_name!r} is a preference (DPO) strategy: list it under "
                f"tasks.<generation task>.preferences.strategies",
            )
        if spec.loss not in LOSSES:
            _fail(
                f"strategies.{strategy_name}.loss",
                f"unknown loss {spec.loss!r}; registered: {LOSSES.names()}",
            )
        if (spec.best_of is None) != (spec.selector is None):
            _fail(f"strategies.{strategy_name}", "best_of and selector go together")
        if not generation and spec.best_of is not None:
            _fail(f"tasks.{name}", f"strategy {strategy_name!r} (best-of-N) applies to generation tasks only")
        if generation:
            unsupported = sorted(k for k in spec.non_defaults() if k in CLASSIFICATION_ONLY)
            if unsupported:
                _fail(
                    f"tasks.{name}",
                    f"strategy {strategy_name!r} sets {unsupported}, which only apply to "
                    "classification; give the task its own student_strategies",
                )
            if spec.selector is not None:
                check_scorer(settings, spec.selector, f"strategies.{strategy_name}.selector")
                if spec.selector == task.scorer and "oracle" not in strategy_name:
                    _fail(
                        f"strategies.{strategy_name}",
                        f"selecting with the evaluation scorer {task.scorer!r} "
                        "is an oracle; name the strategy so it says 'oracle' (e.g. best-of-4-oracle), or "
                        "select "
                        "with a weak scorer",
                    )
    if not generation:
        if is_local(task.data.source) and not Path(task.data.source).is_file():
            _fail(f"tasks.{name}.data.source", f"data file not found: {task.data.source}")
        return
    if task.preferences:
        check_preferences(settings, name)
    if not _published_lm(settings, task.reference_lm):
        _fail(f"tasks.{name}.reference_lm", f"{task.reference_lm!r} is not a pretrained model under `models`")
    check_scorer(settings, task.scorer, f"tasks.{name}.scorer")
    if task.gold:
        if not _published_lm(settings, task.gold.generator):
            _fail(
                f"tasks.{name}.corpus.gold.generator",
                f"{task.gold.generator!r} must be a pretrained LM under `models` (used untuned)",
            )
        check_scorer(settings, task.gold.judge, f"tasks.{name}.corpus.gold.judge")
    elif task.corpus.format == "prompts":
        _fail(
            f"tasks.{name}.corpus",
            "format 'prompts' has no continuations: add a `gold` block to generate them",
        )
    if task.corpus.format not in CORPUS_FORMATS:
        _fail(
            f"tasks.{name}.corpus.format",
            f"unknown format {task.corpus.format!r}; registered: {CORPUS_FORMATS.names()}",
        )
    for key in ("corpus", "prompts"):
        sources = getattr(task, key).source
        for source in [sources] if isinstance(sources, str) else sources:
            if is_local(source) and not Path(source).is_file():
                _fail(f"tasks.{name}.{key}.source", f"data file not found: {source}")


def check_preferences(settings: Settings, name: str) -> None:
    """The preference track: a pretrained generator, known judges, DPO strategies, LoRA strong models."""
    spec, where = settings.tasks[name].preferences, f"tasks.{name}.preferences"
    if not _published_lm(settings, spec.generator):
        _fail(
            f"{where}.generator", f"{spec.generator!r} must be a pretrained LM under `models` (used untuned)"
        )
    for judge in [spec.gold_judge, *spec.weak_judges]:
        check_scorer(
            settings, judge, f"{where}.{'gold_judge' if judge == spec.gold_judge else 'weak_judges'}"
        )
    if spec.gold_judge in spec.weak_judges:
        _fail(
            f"{where}.weak_judges",
            f"{spec.gold_judge!r} is the gold judge; a weak judge must be another scorer",
        )
    strategies = settings.strategies
    for strategy_name in spec.strategies:
        if strategy_name not in strategies:
            _fail(f"{where}.strategies", f"unknown strategy {strategy_name!r}; defined: {sorted(strategies)}")
        strategy = strategies[strategy_name]
        other = sorted(set(strategy.non_defaults()) - {"dpo_weighting", "top_fraction"})
        if strategy.dpo_weighting is None or other:
            _fail(
                f"strategies.{strategy_name}",
                "a preference strategy sets dpo_weighting (none or confidence) and "
                f"optionally top_fraction{f', not {other}' if other else ''}",
            )
    for strong in settings.preference_policies(name):
        model = settings.models.get(strong)
        if model is None:
            _fail(f"{where}.strong_models", f"unknown model {strong!r}")
        if not _published_lm(settings, strong) or not model.spec.lora:
            _fail(
                f"{where}.strong_models",
                f"{strong!r} needs kind pretrained with a `lora` block: DPO's reference "
                "is the base with the adapter disabled (set preferences.strong_models to LoRA models)",
            )


def check_scorer(settings: Settings, name: str, path: str) -> None:
    from w2s_align.registry import SCORERS

    scorers = settings.scorers
    if name not in scorers:
        _fail(path, f"unknown scorer {name!r}; defined: {sorted(scorers)}")
    scorer = scorers[name].entry
    if scorer["kind"] not in SCORERS:
        _fail(
            f"scorers.{name}.kind", f"unknown scorer kind {scorer['kind']!r}; registered: {SCORERS.names()}"
        )
    if not SCORERS.trait(scorer["kind"], "checkpoint", False):
        from w2s_align.registry import unknown_options

        options = {k: v for k, v in scorer.items() if k != "kind"}
        unknown, allowed = unknown_options(SCORERS.get(scorer["kind"]), options)
        if unknown:
            _fail(
                f"scorers.{name}",
                f"unknown option(s) {unknown} for scorer kind {scorer['kind']!r}; allowed: {allowed}",
            )
    else:
        from w2s_align.registry import CLASSIFIER_KINDS

        unknown = sorted(set(scorer) - {"kind", "model", "max_length", "train", "data"})
        if unknown:
            _fail(
                f"scorers.{name}",
                f"unknown option(s) {unknown} for a trained scorer; allowed: data, max_length, model, train",
            )
        model = scorer.get("model")
        if _kind(settings, model) not in CLASSIFIER_KINDS:
            problem = "unknown model" if model not in settings.models else "not a classifier model:"
            _fail(
                f"scorers.{name}.model",
                f"{problem} {model!r} (a trained scorer needs a model of kind {CLASSIFIER_KINDS.names()})",
            )


def check_config(settings: Settings) -> None:
    """Cross-field checks the schema cannot express; each error is one line naming the offending key."""
    from w2s_align.settings.extensions import load_builtins

    load_builtins()
    unknown = [t for t in settings.run.only if t not in settings.tasks]
    if unknown:
        _fail("only", f"unknown task(s) {unknown}; defined tasks: {sorted(settings.tasks)}")
    check_models(settings)
    for name in settings.tasks:
        check_task(settings, name)


def missing_api_keys(settings: Settings, scorers: Iterable[str], environ: Mapping[str, str]) -> str | None:
    """One line naming every environment variable that a web-API scorer among `scorers` needs (registry trait
    `key_env`) and `environ` lacks (or holds only blanks); None when nothing is missing."""
    from w2s_align.registry import SCORERS

    specs = {name: scorer.entry for name, scorer in settings.scorers.items()}
    missing: dict[str, list[str]] = {}
    for name in sorted(set(scorers)):
        variable = SCORERS.trait(specs[name]["kind"], "key_env")
        if variable and not environ.get(variable, "").strip():
            missing.setdefault(variable, []).append(name)
    if not missing:
        return None
    return "; ".join(
        f"the environment variable {variable} is not set, and the {_kinds(specs, names)} scorer(s) "
        f"{names} need it: export {variable}, or choose another scorer"
        for variable, names in missing.items()
    )


def _kinds(specs: dict[str, Any], names: list[str]) -> str:
    return "/".join(sorted({specs[n]["kind"] for n in names}))
