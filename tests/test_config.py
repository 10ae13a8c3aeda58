"""Config checks as millisecond unit tests: schema validation and cross-field checks on dict configs (each
error is ONE line naming the key path and the bad value), and the helpers that turn a config into the
canonical params strings of rules. No Snakemake (tests/test_bad_input.py keeps a few end-to-end runs)."""

from __future__ import annotations

import copy
import glob
import re
from pathlib import Path

import pytest
import yaml

from w2s_align.errors import ConfigError
from w2s_align.settings import settings as w2s
from w2s_align.settings.settings import Settings
from w2s_align.settings.specs import Resources, TaskData, TrainParams
from w2s_align.settings.validate import load_settings, validate

read = Settings.from_config  # a config read as the workflow reads it at its start

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
TINY = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    """Data sources are relative to the working directory (the workflow's, under Snakemake)."""
    monkeypatch.chdir(REPO)


@pytest.fixture(autouse=True, scope="module")
def parse_the_schema_once():
    """validate() parses the schema YAML on every call (~50 ms, most of a DAG-time check); here the parse of
    the unchanged schema text is memoised so that each case takes milliseconds. The validation is real."""
    real, text = yaml.safe_load, SCHEMA.read_text(encoding="utf-8")
    parsed = real(text)

    def safe_load(stream):
        return parsed if isinstance(stream, str) and stream == text else real(stream)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(yaml, "safe_load", safe_load)
        yield


@pytest.fixture
def tiny():
    return copy.deepcopy(TINY)


def check(cfg) -> None:
    """What common.smk does at DAG time."""
    load_settings(cfg, SCHEMA)


def error_of(cfg) -> str:
    with pytest.raises(ConfigError) as info:
        check(cfg)
    message = str(info.value)
    assert "\n" not in message, message
    assert len(message) < 400, message
    return message


def deep_merge(base: dict, over: dict) -> dict:
    """Snakemake's --configfile layering: nested mappings merge, other values replace."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = (
            deep_merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def add_strategy(cfg, name, block, task=None):
    cfg["strategies"][name] = block
    (cfg["tasks"][task] if task else cfg)["student_strategies"].append(name)


def ensemble(cfg, *members):
    cfg["models"]["ens"] = {"kind": "ensemble", "members": list(members)}


# --- shipped configs are valid --------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer",
    [None] + sorted(glob.glob(str(REPO / "configs/*.yaml"))),
    ids=lambda p: Path(p).name if p else "config.yaml",
)
def test_shipped_configs_pass(layer):
    cfg = deep_merge(DEFAULT, yaml.safe_load(Path(layer).read_text())) if layer else DEFAULT
    check(cfg)


def test_tiny_config_passes(tiny):
    check(tiny)


def test_minimal_config_passes_and_takes_the_defaults(tiny):
    cfg = {
        "tasks": {"safety": {"max_length": 16, "data": tiny["tasks"]["safety"]["data"]}},
        "models": {"tfidf": {"kind": "tfidf"}},
        "weak_models": ["tfidf"],
        "strong_models": ["tfidf"],
    }
    check(cfg)
    run = read(cfg).run
    assert run.seeds == [0] and run.strategies == {"naive": {}} and run.only == [] and run.threads == 2
    assert read(cfg).tasks["safety"].student_strategies == ["naive"]
    assert read(cfg).tasks["safety"].kind == "classification"
    assert w2s.bootstrap_resamples(read(cfg)) == 1000


# --- errors: (key path regex, fragments the message must contain) ---------------------------------

SCHEMA_ERRORS = [
    (
        "unknown-top-level-key",
        lambda c: c.update(bogus_key=1),
        r"\(top level\)",
        ["'bogus_key' was unexpected"],
    ),
    (
        "model-key-in-wrong-place",
        lambda c: c["models"]["tiny-gpt2"].update(lr=0.1),
        r"models\.tiny-gpt2",
        ["'lr' was unexpected"],
    ),
    ("seeds-not-a-list", lambda c: c.update(seeds="zero"), "seeds", ["'zero' is not of type 'array'"]),
    ("duplicate-seeds", lambda c: c.update(seeds=[0, 0]), "seeds", ["[0, 0]", "non-unique"]),
    (
        "negative-size",
        lambda c: c["tasks"]["safety"]["data"]["sizes"].update(test=-5),
        r"tasks\.safety\.data\.sizes\.test",
        ["-5", "minimum of 1"],
    ),
    (
        "bad-model-name",
        lambda c: c["models"].update({"bad__name": {"kind": "tfidf"}}),
        "models",
        ["'bad__name' does not match"],
    ),
    (
        "generation-without-corpus",
        lambda c: c["tasks"]["toxicity"].pop("corpus"),
        r"tasks\.toxicity",
        ["'corpus' is a required property"],
    ),
    (
        "classification-without-data",
        lambda c: c["tasks"]["safety"].pop("data"),
        r"tasks\.safety",
        ["'data' is a required property"],
    ),
    (
        "missing-max-length",
        lambda c: c["tasks"]["safety"].pop("max_length"),
        r"tasks\.safety",
        ["'max_length' is a required property"],
    ),
    (
        "unknown-task-kind",
        lambda c: c["tasks"]["safety"].update(kind="regression"),
        r"tasks\.safety\.kind",
        ["'regression'", "'classification', 'generation'"],
    ),
    (
        "label-map-value",
        lambda c: c["tasks"]["safety"]["data"]["label_map"].update({"True": 2}),
        r"tasks\.safety\.data\.label_map\.True",
        ["2 is not one of [0, 1]"],
    ),
    (
        "three-text-fields",
        lambda c: c["tasks"]["safety"]["data"].update(text_fields=["a", "b", "c"]),
        r"tasks\.safety\.data\.text_fields",
        ["['a', 'b', 'c']", "too long"],
    ),
    (
        "train-typo",
        lambda c: c["models"]["tiny-gpt2"]["train"].update(learning_rate=1),
        r"models\.tiny-gpt2\.train",
        ["'learning_rate' was unexpected"],
    ),
    (
        "student-override-typo",
        lambda c: c["models"]["small-bert"].update(student={"epoch": 1}),
        r"models\.small-bert\.student",
        ["'epoch' was unexpected"],
    ),
    (
        "scorer-train-typo",
        lambda c: c["scorers"]["tfidf-davidson"].update(train={"lrr": 1}),
        r"scorers\.tfidf-davidson\.train",
        ["'lrr' was unexpected"],
    ),
    (
        "decoding-samples-is-internal",
        lambda c: c["tasks"]["toxicity"]["decoding"].update(samples=3),
        r"tasks\.toxicity\.decoding",
        ["'samples' was unexpected"],
    ),
    (
        "trained-scorer-without-model",
        lambda c: c["scorers"]["tfidf-davidson"].pop("model"),
        r"scorers\.tfidf-davidson",
        ["'model' is a required property"],
    ),
    (
        "strategy-option-typo",
        lambda c: c["strategies"]["logconf"].update(warmup=0.1),
        r"strategies\.logconf",
        ["'warmup' was unexpected"],
    ),
    (
        "strategy-value-out-of-range",
        lambda c: c["strategies"]["logconf"].update(top_fraction=1.5),
        r"strategies\.logconf\.top_fraction",
        ["1.5", "maximum of 1"],
    ),
    (
        "ensemble-of-one",
        lambda c: (ensemble(c, "tfidf"), c["weak_models"].append("ens")),
        r"models\.ens\.members",
        ["['tfidf'] is too short"],
    ),
    ("threads-zero", lambda c: c.update(threads=0), "threads", ["0 is less than the minimum of 1"]),
    (
        "archive-hash-not-hex",
        lambda c: c["models"]["smollm2-135m"].update(archive={"parts": ["a.zip.001"], "sha256": "abc"}),
        r"models\.smollm2-135m\.archive\.sha256",
        ["'abc'"],
    ),
]

CROSS_FIELD_ERRORS = [
    (
        "unknown-weak-model",
        lambda c: c.update(weak_models=["no-such-model"]),
        r"(tasks\.safety\.)?weak_models",
        ["unknown model(s) ['no-such-model']", "'tiny-gpt2'"],
    ),
    (
        "unknown-strong-model-of-task",
        lambda c: c["tasks"]["toxicity"].update(strong_models=["ghost"]),
        r"tasks\.toxicity\.strong_models",
        ["unknown model(s) ['ghost']"],
    ),
    (
        "missing-data-file",
        lambda c: c["tasks"]["safety"]["data"].update(source="resources/data/missing.csv"),
        r"tasks\.safety\.data\.source",
        ["data file not found: resources/data/missing.csv"],
    ),
    (
        "missing-prompts-file",
        lambda c: c["tasks"]["toxicity"]["prompts"].update(source="resources/data/none.jsonl"),
        r"tasks\.toxicity\.prompts\.source",
        ["data file not found: resources/data/none.jsonl"],
    ),
    (
        "missing-corpus-file",
        lambda c: c["tasks"]["toxicity"]["corpus"].update(source="nope.csv"),
        r"tasks\.toxicity\.corpus\.source",
        ["data file not found: nope.csv"],
    ),
    (
        "unknown-strategy",
        lambda c: c["student_strategies"].append("nope"),
        r"(tasks\.\w+\.)?student_strategies",
        ["unknown strategy 'nope'", "'logconf', 'naive'"],
    ),
    (
        "unknown-loss",
        lambda c: add_strategy(c, "odd", {"loss": "hinge"}),
        r"strategies\.odd\.loss",
        ["unknown loss 'hinge'", "'logconf'", "'xent'"],
    ),
    (
        "unknown-model-kind",
        lambda c: c["models"]["tfidf"].update(kind="svm"),
        r"models\.tfidf\.kind",
        ["unknown kind 'svm'", "'scratch'", "'tfidf'"],
    ),
    (
        "unknown-scorer-kind",
        lambda c: c["scorers"]["tfidf-davidson"].update(kind="magic"),
        r"scorers\.tfidf-davidson\.kind",
        ["unknown scorer kind 'magic'", "'trained'"],
    ),
    (
        "unknown-corpus-format",
        lambda c: c["tasks"]["toxicity"]["corpus"].update(format="csv"),
        r"tasks\.toxicity\.corpus\.format",
        ["unknown format 'csv'", "'rtp', 'tweets'"],
    ),
    (
        "only-unknown-task",
        lambda c: c.update(only=["toxicity", "nope"]),
        "only",
        ["unknown task(s) ['nope']", "'legal', 'safety', 'toxicity'"],
    ),
    (
        "pretrained-without-path",
        lambda c: c["models"]["smollm2-135m"].pop("path"),
        r"models\.smollm2-135m",
        ["'pretrained' needs a `path`"],
    ),
    (
        "archive-on-a-tfidf-model",
        lambda c: c["models"]["tfidf"].update(archive={"parts": ["a.zip.001"], "sha256": "0" * 64}),
        r"models\.tfidf\.archive",
        ["only pretrained models load from one, not kind 'tfidf'"],
    ),
    (
        "gguf-file-and-archive",
        lambda c: c["models"]["smollm2-135m"].update(archive={"parts": ["a.zip.001"], "sha256": "0" * 64}),
        r"models\.smollm2-135m",
        ["give `gguf_file` or `archive`, not both"],
    ),
    (
        "ensemble-with-unknown-member",
        lambda c: (ensemble(c, "tfidf", "ghost"), c["weak_models"].append("ens")),
        r"models\.ens",
        ["two or more non-ensemble member", "['ghost']"],
    ),
    (
        "ensemble-as-strong-model",
        lambda c: (ensemble(c, "tfidf", "tiny-gpt2"), c["strong_models"].append("ens")),
        r"(tasks\.\w+\.)?strong_models",
        ["'ens'", "can only be a weak model"],
    ),
    (
        "tfidf-weak-for-generation",
        lambda c: c["tasks"]["toxicity"].update(weak_models=["tfidf"]),
        r"tasks\.toxicity\.weak_models",
        ["['tfidf'] cannot be used here", "generation", "'pretrained', 'scratch'"],
    ),
    (
        "tfidf-strong-for-generation",
        lambda c: c["tasks"]["toxicity"].update(strong_models=["tfidf"]),
        r"tasks\.toxicity\.strong_models",
        ["['tfidf'] cannot be used here", "generation"],
    ),
    (
        "ensemble-weak-for-generation",
        lambda c: (ensemble(c, "tfidf", "tiny-gpt2"), c["tasks"]["toxicity"].update(weak_models=["ens"])),
        r"tasks\.toxicity\.weak_models",
        ["['ens'] cannot be used here"],
    ),
    (
        "unknown-scorer",
        lambda c: c["tasks"]["toxicity"].update(scorer="ghost"),
        r"tasks\.toxicity\.scorer",
        ["unknown scorer 'ghost'", "'tfidf-davidson'"],
    ),
    (
        "trained-scorer-unknown-model",
        lambda c: c["scorers"]["tfidf-davidson"].update(model="ghost"),
        r"scorers\.tfidf-davidson\.model",
        ["unknown model 'ghost'"],
    ),
    (
        "reference-lm-not-pretrained",
        lambda c: c["tasks"]["toxicity"].update(reference_lm="tiny-gpt2"),
        r"tasks\.toxicity\.reference_lm",
        ["'tiny-gpt2' is not a pretrained model"],
    ),
    (
        "classification-strategy-on-generation",
        lambda c: c["tasks"]["toxicity"].update(student_strategies=["logconf"]),
        r"tasks\.toxicity",
        ["'logconf'", "['loss']", "only apply to classification"],
    ),
    (
        "best-of-with-evaluation-scorer",
        lambda c: add_strategy(c, "best-of-2", {"best_of": 2, "selector": "tfidf-davidson"}, task="toxicity"),
        r"strategies\.best-of-2",
        ["evaluation scorer 'tfidf-davidson'", "is an oracle"],
    ),
    (
        "best-of-on-classification",
        lambda c: add_strategy(c, "best-of-2", {"best_of": 2, "selector": "tfidf-davidson-b"}),
        r"tasks\.(legal|safety)",
        ["'best-of-2'", "applies to generation tasks only"],
    ),
    (
        "best-of-without-selector",
        lambda c: add_strategy(c, "bo", {"best_of": 2}, task="toxicity"),
        r"strategies\.bo",
        ["best_of and selector go together"],
    ),
    (
        "selector-unknown-scorer",
        lambda c: add_strategy(c, "bo", {"best_of": 2, "selector": "ghost"}, task="toxicity"),
        r"strategies\.bo\.selector",
        ["unknown scorer 'ghost'"],
    ),
]


def assert_one_line_error(config, change, path, fragments):
    change(config)
    message = error_of(config)
    assert re.match(rf"config {path}: ", message), message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize(
    "change, path, fragments", [pytest.param(*case[1:], id=case[0]) for case in SCHEMA_ERRORS]
)
def test_schema_errors_are_one_line_naming_key_and_value(tiny, change, path, fragments):
    assert_one_line_error(tiny, change, path, fragments)
    with pytest.raises(ConfigError):  # the schema alone catches it
        validate(tiny, SCHEMA)


@pytest.mark.parametrize(
    "change, path, fragments", [pytest.param(*case[1:], id=case[0]) for case in CROSS_FIELD_ERRORS]
)
def test_cross_field_errors_are_one_line_naming_key_and_value(tiny, change, path, fragments):
    assert_one_line_error(tiny, change, path, fragments)


def test_a_huge_bad_value_gives_a_short_message(tiny):
    tiny["seeds"] = [7] * 5000
    message = error_of(tiny)
    assert message.startswith("config seeds: [7, 7") and message.endswith("has non-unique elements")


def test_trained_scorer_model_must_be_a_classifier(tiny):
    ensemble(tiny, "tfidf", "tiny-gpt2")
    tiny["scorers"]["tfidf-davidson"]["model"] = "ens"
    assert re.match(r"config scorers\.tfidf-davidson\.model: ", error_of(tiny))


def test_strategies_that_no_task_runs_are_not_checked(tiny):
    """Only the strategies in some task's student_strategies reach a rule."""
    tiny["strategies"]["unused"] = {"loss": "hinge"}
    check(tiny)


def test_best_of_with_a_weak_selector_or_an_oracle_name_passes(tiny):
    add_strategy(tiny, "best-of-2", {"best_of": 2, "selector": "tfidf-davidson-b"}, task="toxicity")
    add_strategy(tiny, "best-of-2-oracle", {"best_of": 2, "selector": "tfidf-davidson"}, task="toxicity")
    check(tiny)


def test_hub_sources_are_not_looked_for_on_disk(tiny):
    tiny["tasks"]["safety"]["data"]["source"] = "hf:someone/some-dataset"
    tiny["tasks"]["toxicity"]["prompts"]["source"] = "hf:allenai/real-toxicity-prompts"
    check(tiny)


# --- helpers -------------------------------------------------------------------------------------


def test_active_tasks_and_only(tiny):
    assert read(tiny).active_tasks() == ["legal", "safety", "toxicity"]
    tiny["only"] = ["toxicity", "legal"]
    check(tiny)
    assert read(tiny).active_tasks() == ["legal", "toxicity"]
    assert read(tiny).tasks_of("classification") == ["legal"]
    assert read(tiny).tasks_of("generation") == ["toxicity"]
    tiny["only"] = []
    assert read(tiny).active_tasks() == ["legal", "safety", "toxicity"]


def test_task_list_falls_back_to_the_top_level_then_the_default(tiny):
    assert read(tiny).tasks["toxicity"].weak_models == ["tiny-gpt2"]  # its own
    assert read(tiny).tasks["safety"].weak_models == ["tiny-gpt2", "tfidf"]  # top level
    assert read(tiny).tasks["safety"].student_strategies == ["naive", "logconf"]
    del tiny["student_strategies"]
    assert read(tiny).tasks["safety"].student_strategies == ["naive"]  # RunDefaults
    assert read(tiny).tasks["toxicity"].student_strategies == ["naive"]


def test_task_settings_defaults(tiny):
    assert read(tiny).tasks["safety"].kind == "classification"
    assert read(tiny).tasks["toxicity"].kind == "generation"
    assert read(tiny).tasks["toxicity"].eval_samples == 2
    del tiny["tasks"]["toxicity"]["eval_samples"]
    assert read(tiny).tasks["toxicity"].eval_samples == 4


def test_model_spec_leaves_defaults_and_training_settings_out(tiny):
    spec = w2s.model_spec(read(tiny), "tiny-gpt2")
    # architecture gpt2 is the default; train is not part of the model's identity
    assert spec == '{"kind":"scratch","size":{"n_embd":32,"n_head":2,"n_layer":1},"vocab_size":500}'
    assert w2s.model_spec(read(tiny), "tfidf") == '{"kind":"tfidf"}'
    model = tiny["models"]["tiny-gpt2"]
    model.update(
        gradient_checkpointing=False,
        revision=None,
        lora=None,
        gguf_file=None,
        tfidf={},
        resources={"mem_mb": 99999},
        student={"lr": 1.0},
        train={"epochs": 9},
    )
    check(tiny)
    assert w2s.model_spec(read(tiny), "tiny-gpt2") == spec
    model["vocab_size"] = 501
    assert w2s.model_spec(read(tiny), "tiny-gpt2") != spec


def test_train_hparams_default_keys_and_student_overrides(tiny):
    model = tiny["models"]["small-bert"]
    weak = w2s.train_hparams(read(tiny), "small-bert", "weak")
    assert weak == '{"batch_size":32,"lr":0.001}'  # epochs 2 is the default
    assert w2s.train_hparams(read(tiny), "small-bert", "ceiling") == weak
    assert w2s.train_hparams(read(tiny), "small-bert", "student") == weak  # no student block
    model["train"].update(weight_decay=0.01, warmup_ratio=0.1, eval_batch_size=64)  # all defaults
    assert w2s.train_hparams(read(tiny), "small-bert", "weak") == weak
    model["student"] = {"lr": 5.0e-5, "epochs": 2}
    check(tiny)
    assert w2s.train_hparams(read(tiny), "small-bert", "ceiling") == weak
    assert w2s.train_hparams(read(tiny), "small-bert", "weak") == weak
    assert TrainParams.from_json(w2s.train_hparams(read(tiny), "small-bert", "student")) == TrainParams(
        lr=5.0e-5, epochs=2, batch_size=32
    )
    assert w2s.train_hparams(read(tiny), "tfidf", "student") == "{}"  # no train block at all


def test_resources_defaults(tiny):
    assert read(tiny).resources("tiny-gpt2") == Resources() == Resources(mem_mb=8000, runtime=60)
    assert read(tiny).resources(None) == Resources()
    tiny["models"]["tiny-gpt2"]["resources"] = {"mem_mb": 16000}
    assert read(tiny).resources("tiny-gpt2") == Resources(mem_mb=16000, runtime=60)


def test_task_blocks_canonical(tiny):
    assert (
        w2s.decoding(read(tiny), "toxicity") == '{"batch_size":16,"max_new_tokens":6}'
    )  # temperature, top_p defaults
    del tiny["tasks"]["toxicity"]["decoding"]
    assert w2s.decoding(read(tiny), "toxicity") == "{}"
    data = tiny["tasks"]["safety"]["data"]
    before = w2s.canonical(TaskData, data)
    data.update(hf_split="train", test_seed=0, group_field=None)
    assert w2s.canonical(TaskData, data) == before
    assert read(tiny).strategies["logconf"].canonical() == '{"loss":"logconf"}'
    assert read(tiny).strategies["naive"].canonical() == "{}"


def test_bootstrap_and_params_string(tiny):
    assert w2s.bootstrap_resamples(read(tiny)) == 50
    del tiny["metrics"]
    assert w2s.bootstrap_resamples(read(tiny)) == 1000
    assert w2s.canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
