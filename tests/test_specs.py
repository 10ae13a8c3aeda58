"""specs.py is the one home of defaults and workflow/schemas/config.schema.yaml documents the same keys:
they agree key by key, in type and in every default the schema states. Plus the canonical form that reaches
rules (default-valued keys left out) and unknown-key errors. Milliseconds, no Snakemake."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

from w2s_align.settings import specs
from w2s_align.settings.specs import (
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
    SpecError,
    Strategy,
    TaskData,
    TaskDefaults,
    TfidfOptions,
    TrainParams,
)

SCHEMA = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text()
)
DEFS = SCHEMA["$defs"]
TASK = DEFS["task"]["properties"]
MODEL = DEFS["model"]["properties"]


def resolve(prop: dict) -> dict:
    """A property with its local `$ref` (#/$defs/<name>) merged in (the property's own keys win)."""
    if "$ref" not in prop:
        return prop
    target = DEFS[prop["$ref"].rsplit("/", 1)[1]]
    return {**target, **{k: v for k, v in prop.items() if k != "$ref"}}


def props(block: dict) -> dict:
    """The keys a block declares ({} for a free-form object, which then fails the key comparison)."""
    return resolve(block).get("properties", {})


# schema block -> dataclass, with the keys each side may have alone and why.
PAIRS = {
    "$defs/train": (props(DEFS["train"]), TrainParams, set(), set()),
    "$defs/model": (
        MODEL,
        ModelSpec,
        # training settings and cluster request: not part of a model's identity (config.MODEL_ONLY_KEYS)
        {"train", "student", "resources"},
        set(),
    ),
    "$defs/model.student": (MODEL["student"]["properties"], TrainParams, set(), set()),
    "$defs/model.resources": (MODEL["resources"]["properties"], Resources, set(), set()),
    "$defs/model.tfidf": (MODEL["tfidf"]["properties"], TfidfOptions, set(), set()),
    "$defs/strategy": (props(DEFS["strategy"]), Strategy, set(), set()),
    "$defs/task.data": (TASK["data"]["properties"], TaskData, set(), set()),
    "$defs/task.corpus": (TASK["corpus"]["properties"], CorpusSpec, set(), set()),
    "$defs/task.prompts": (TASK["prompts"]["properties"], PromptSpec, set(), set()),
    "$defs/task.corpus.gold": (TASK["corpus"]["properties"]["gold"]["properties"], GoldSpec, set(), set()),
    "$defs/task.preferences": (TASK["preferences"]["properties"], PreferenceSpec, set(), set()),
    # samples is set by the pipeline (1 for weak labels, eval_samples for evaluation), not a config key
    "$defs/task.decoding": (TASK["decoding"]["properties"], Decoding, set(), {"samples"}),
    "$defs/scorer.data": (DEFS["scorer"]["properties"]["data"]["properties"], ScorerData, set(), set()),
    # a trained scorer's own training settings are read with TrainParams (rule train_scorer)
    "$defs/scorer.train": (props(DEFS["scorer"]["properties"]["train"]), TrainParams, set(), set()),
    "metrics": (SCHEMA["properties"]["metrics"]["properties"], MetricsSpec, set(), set()),
    # the rest of the top level has no default: the lists and registries every run names, and metrics (above)
    "(top level)": (
        SCHEMA["properties"],
        RunDefaults,
        {"tasks", "models", "weak_models", "strong_models", "metrics"},
        set(),
    ),
    # required or per-role keys of a task; its blocks are checked above
    "$defs/task": (
        TASK,
        TaskDefaults,
        {
            "max_length",
            "weak_models",
            "strong_models",
            "student_strategies",
            "controls",
            "corpus",
            "prompts",
            "decoding",
            "scorer",
            "reference_lm",
            "data",
            "preferences",
        },
        set(),
    ),
}

# Dataclass fields with a default that the schema leaves without a `default` (and why).
UNDOCUMENTED_DEFAULTS = {
    (ModelSpec, "path"),  # required for pretrained (check_models); meaningless for the other kinds
    (ModelSpec, "members"),  # ensemble only, where two or more are required
    (Strategy, "best_of"),  # unset = no best-of-N; the schema allows only an integer >= 2
    (Strategy, "selector"),  # goes with best_of
    (
        Strategy,
        "dpo_weighting",
    ),  # unset = not a preference strategy; the schema allows only none / confidence
    (CorpusSpec, "sizes"),  # required by the schema
}

# Blocks of overrides: an unset key means "as the block overridden", so no key has a default of its own.
OVERRIDES = {"$defs/model.student"}

JSON_TYPES = {
    "int": {"integer"},
    "float": {"number", "integer"},
    "str": {"string"},
    "bool": {"boolean"},
    "dict": {"object"},
    "list": {"array"},
    "None": {"null"},
    "Any": None,
}


def field_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def python_types(annotation: str) -> set[str] | None:
    """JSON types a field annotated `annotation` can hold (None: anything)."""
    out: set[str] = set()
    for part in annotation.split("|"):
        base = re.match(r"\s*(\w+)", part).group(1)
        if JSON_TYPES[base] is None:
            return None
        out |= JSON_TYPES[base]
    return out


def schema_types(prop: dict) -> set[str] | None:
    prop = resolve(prop)
    if "type" in prop:
        return set([prop["type"]] if isinstance(prop["type"], str) else prop["type"])
    if "enum" in prop:
        names = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}
        return {names[type(v)] for v in prop["enum"]}
    return None


def cases():
    return [pytest.param(*value, id=name) for name, value in PAIRS.items()]


def default_cases():
    return [pytest.param(*value, id=name) for name, value in PAIRS.items() if name not in OVERRIDES]


@pytest.mark.parametrize("schema_props, cls, schema_only, class_only", cases())
def test_schema_and_dataclass_have_the_same_keys(schema_props, cls, schema_only, class_only):
    fields = {f.name for f in dataclasses.fields(cls)}
    assert set(schema_props) - fields == schema_only, f"keys in the schema only ({cls.__name__})"
    assert fields - set(schema_props) == class_only, f"fields of {cls.__name__} the schema does not know"


@pytest.mark.parametrize("schema_props, cls, schema_only, class_only", default_cases())
def test_schema_defaults_are_the_dataclass_defaults(schema_props, cls, schema_only, class_only):
    for f in dataclasses.fields(cls):
        if f.name not in schema_props:
            continue
        prop = schema_props[f.name]
        default = field_default(f)
        if "default" in prop:
            assert default is not dataclasses.MISSING, f"{cls.__name__}.{f.name}: the schema has a default"
            assert prop["default"] == default and type(prop["default"]) is type(default), (
                f"{cls.__name__}.{f.name}: schema default {prop['default']!r} != dataclass default "
                f"{default!r}"
            )
        elif default is not dataclasses.MISSING:
            assert (cls, f.name) in UNDOCUMENTED_DEFAULTS, (
                f"{cls.__name__}.{f.name}: the schema does not document the default {default!r}"
            )


@pytest.mark.parametrize("schema_props, cls, schema_only, class_only", cases())
def test_schema_types_fit_the_dataclass(schema_props, cls, schema_only, class_only):
    """Everything the schema accepts for a key, the field's annotation can hold."""
    for f in dataclasses.fields(cls):
        if f.name in schema_props:
            accepted, holds = schema_types(schema_props[f.name]), python_types(f.type)
            if accepted is not None and holds is not None:
                assert accepted <= holds, f"{cls.__name__}.{f.name}: schema {accepted}, annotation {f.type}"


@pytest.mark.parametrize(
    "block, cls",
    [
        (DEFS["model"], ModelSpec),
        (TASK["data"], TaskData),
        (TASK["corpus"], CorpusSpec),
        (TASK["prompts"], PromptSpec),
        (DEFS["scorer"]["properties"]["data"], ScorerData),
    ],
)
def test_fields_without_default_are_required_by_the_schema(block, cls):
    required = {f.name for f in dataclasses.fields(cls) if field_default(f) is dataclasses.MISSING}
    assert required <= set(block.get("required", [])), cls.__name__


def test_student_overrides_and_train_have_the_same_constraints():
    train = props(DEFS["train"])
    student = MODEL["student"]["properties"]
    for key, prop in student.items():
        assert "default" not in prop, f"student.{key}: an override has no default (unset = as in `train`)"
        assert prop == {k: v for k, v in train[key].items() if k not in ("default", "description")}, key


# --- canonical form and construction ------------------------------------------------------------

REQUIRED = {  # values for the fields without a default
    ModelSpec: {"kind": "scratch"},
    TaskData: {
        "source": "x.csv",
        "text_fields": ["t"],
        "label_field": "y",
        "label_map": {"a": 1, "b": 0},
        "sizes": {"weak_train": 1, "weak_label": 1, "val": 1, "test": 1},
    },
    ScorerData: {
        "source": "x.csv",
        "text_fields": ["t"],
        "label_field": "y",
        "label_map": {"a": 1, "b": 0},
        "sizes": {"train": 1, "val": 1, "test": 1},
    },
    CorpusSpec: {"source": "x.csv"},
    PromptSpec: {"source": "p.jsonl"},
    GoldSpec: {"generator": "g", "judge": "j"},
    PreferenceSpec: {
        "generator": "g",
        "gold_judge": "j",
        "weak_judges": ["w"],
        "strategies": ["dpo"],
        "sizes": {"train": 1, "val": 1, "test": 1},
    },
}
SPEC_CLASSES = [
    obj for obj in vars(specs).values() if isinstance(obj, type) and issubclass(obj, Spec) and obj is not Spec
]


def test_every_spec_class_is_covered():
    assert {c.__name__ for c in SPEC_CLASSES} == {
        "TrainParams",
        "TfidfOptions",
        "ModelSpec",
        "Resources",
        "Strategy",
        "TaskData",
        "ScorerData",
        "CorpusSpec",
        "PromptSpec",
        "GoldSpec",
        "PreferenceSpec",
        "Decoding",
        "TaskDefaults",
        "RunDefaults",
        "MetricsSpec",
    }


@pytest.mark.parametrize("cls", SPEC_CLASSES, ids=lambda c: c.__name__)
def test_canonical_leaves_default_values_out(cls):
    required = REQUIRED.get(cls, {})
    plain = cls.from_dict(required)
    assert json.loads(plain.canonical()) == required
    for f in dataclasses.fields(cls):
        default = field_default(f)
        if default is not dataclasses.MISSING:
            explicit = cls.from_dict({**required, f.name: default})
            assert explicit.canonical() == plain.canonical(), f"{cls.__name__}.{f.name}"
    all_explicit = cls.from_dict(
        {
            **required,
            **{
                f.name: field_default(f)
                for f in dataclasses.fields(cls)
                if field_default(f) is not dataclasses.MISSING
            },
        }
    )
    assert all_explicit == plain and all_explicit.canonical() == plain.canonical()


def test_canonical_keeps_changed_values_sorted_and_compact():
    spec = TrainParams.from_dict({"warmup_ratio": 0.0, "lr": 1e-3, "epochs": 2})
    assert spec.canonical() == '{"lr":0.001,"warmup_ratio":0.0}'
    assert TrainParams.from_json(spec.canonical()) == spec
    assert TrainParams.from_json(None) == TrainParams() and TrainParams().canonical() == "{}"
    # a default_factory field at its default is left out; a changed one kept
    assert ModelSpec(kind="tfidf", tfidf={}).canonical() == '{"kind":"tfidf"}'
    assert ModelSpec(kind="tfidf", tfidf={"C": 1.0}).canonical() == '{"kind":"tfidf","tfidf":{"C":1.0}}'


def test_canonical_does_not_depend_on_key_order():
    a = ModelSpec.from_dict({"kind": "scratch", "size": {"n_layer": 1, "n_embd": 32}, "vocab_size": 500})
    b = ModelSpec.from_dict({"vocab_size": 500, "size": {"n_embd": 32, "n_layer": 1}, "kind": "scratch"})
    assert a.canonical() == b.canonical()


@pytest.mark.parametrize("cls", SPEC_CLASSES, ids=lambda c: c.__name__)
def test_from_dict_rejects_unknown_keys_naming_them(cls):
    with pytest.raises(SpecError) as info:
        cls.from_dict({**REQUIRED.get(cls, {}), "bogus_option": 1, "another_typo": 2})
    message = str(info.value)
    assert "\n" not in message
    assert cls.__name__ in message and "'another_typo'" in message and "'bogus_option'" in message
    assert all(f.name in message for f in dataclasses.fields(cls))  # the known options are listed


def test_strategy_describe():
    assert Strategy().describe().startswith("naive")
    assert json.loads(Strategy(loss="logconf").describe()) == {"loss": "logconf"}
