"""Settings: the config read once per workflow start with the defaults of specs.py, the only home of defaults.
The plan, the checks and the rules' params all read it, so a default changed in specs.py reaches all three;
and reading the config this way left every job's params, inputs and resources as they were
(params_snapshot.json)."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json

import pytest
import yaml

from w2s_align.cluster import cost, plan
from w2s_align.errors import ConfigError
from w2s_align.settings import specs
from w2s_align.settings.extensions import load_builtins
from w2s_align.settings.settings import Settings
from w2s_align.settings.validate import load_settings

from helpers import REPO
from params_snapshot import CONFIGS, dag_params, dag_workflow

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())
SNAPSHOT = json.loads((REPO / "tests/params_snapshot.json").read_text())

load_builtins()


def patch_default(monkeypatch, cls: type, name: str, value) -> None:
    """Change the default of dataclass field `cls.name` (as an edit of specs.py would) for one test."""
    monkeypatch.setattr(cls.__dataclass_fields__[name], "default", value)  # what non_defaults() compares with
    monkeypatch.setattr(cls, name, value)
    init = cls.__init__
    with_defaults = [p for p in inspect.signature(init).parameters.values() if p.default is not p.empty]
    index = [p.name for p in with_defaults].index(name)
    if init.__defaults__ and len(init.__defaults__) == len(with_defaults):
        monkeypatch.setattr(
            init, "__defaults__", init.__defaults__[:index] + (value,) + init.__defaults__[index + 1 :]
        )
    else:
        monkeypatch.setattr(init, "__kwdefaults__", {**(init.__kwdefaults__ or {}), name: value})
    assert getattr(cls(), name) == value


def without_batch_size(effective: int | None = None) -> dict:
    """config.yaml with minilm-l6 training at the default batch size (and `effective` rows per step)."""
    cfg = copy.deepcopy(DEFAULT)
    train = cfg["models"]["minilm-l6"]["train"]
    del train["batch_size"]
    if effective:
        train["effective_batch_size"] = effective
    return cfg


def ceiling_hparams() -> str:
    """The hparams param of the default config's train_ceiling job of minilm-l6 (safety), from Snakemake's
    DAG."""
    with dag_workflow() as workflow:
        (job,) = [
            j for j in workflow.dag.jobs if j.rule.name == "train_ceiling" and j.wildcards["task"] == "safety"
        ]
        return job.params.hparams


def test_a_default_changed_in_specs_reaches_the_plan_the_checks_and_the_params(monkeypatch):
    old = specs.TrainParams().batch_size
    assert (
        ceiling_hparams() == '{"epochs":3,"lr":0.0002}'
    )  # minilm-l6 sets batch_size 16, the default: left out
    with pytest.raises(ConfigError, match=f"12 is not a multiple of batch_size {old}"):
        load_settings(without_batch_size(effective=12), SCHEMA)

    patch_default(monkeypatch, specs.TrainParams, "batch_size", 4)
    # the checks: 12 rows per step are now 3 micro-batches of the default 4
    settings = load_settings(without_batch_size(effective=12), SCHEMA)
    assert settings.hparams("minilm-l6", "ceiling").batch_size == 4
    # the plan: the memory model is given micro-batches of 4 rows
    batches = []
    real = cost.memory
    monkeypatch.setattr(cost, "memory", lambda *args, **kw: batches.append(kw["batch"]) or real(*args, **kw))
    cost.estimate(settings, cost.Work("train_ceiling", "train", "minilm-l6", "safety", "ceiling"))
    assert batches == [4]
    works = [
        cost.Work(r, k, "minilm-l6", "safety", role)
        for r, k, role in (("train_ceiling", "train", "ceiling"), ("predict", "predict", "ceiling"))
    ]
    assert plan.request_problems(settings, works) == []
    # the rules' params: minilm-l6's batch_size 16 is no longer the default, so the ceiling's params name it
    assert json.loads(ceiling_hparams()) == {"batch_size": 16, "epochs": 3, "lr": 0.0002}


def test_settings_are_built_once_per_workflow_start(monkeypatch):
    built = []
    real = Settings.from_config.__func__
    monkeypatch.setattr(
        Settings, "from_config", classmethod(lambda cls, config: built.append(real(cls, config)) or built[-1])
    )
    with dag_workflow(("configs/strategies.yaml",)) as workflow:
        assert len(workflow.dag.jobs) > 50
        assert len(built) == 1 and workflow.globals["SETTINGS"] is built[0]
    settings, jobs = plan.dag_jobs(["configs/strategies.yaml"])
    assert len(built) == 2 and settings is built[1]  # the plan reads the object the workflow built


@pytest.mark.parametrize("files", CONFIGS, ids=lambda f: "+".join(f) or "config.yaml")
def test_every_jobs_params_inputs_and_resources_are_those_of_before(files):
    """Reading the config once changed no job's params (no rerun of a finished run), inputs or resources."""
    assert dag_params(files) == SNAPSHOT["+".join(files) or "config.yaml"]


def test_controls_are_runs_of_classification_tasks():
    settings = Settings.from_config({**DEFAULT, "controls": ["strong-to-strong", "weak-to-weak"]})
    safety = settings.student_runs("safety")
    assert safety[:3] == [("bow-10", "minilm-l6", s) for s in ("naive", "logconf", "confident")]
    assert safety[3:] == [("minilm-l6", "minilm-l6", "naive"), ("bow-10", "bow-10", "naive")]
    assert settings.student_runs("legal")[3:] == [
        ("minilm-l6-pairs",) * 2 + ("naive",),
        ("bow-200",) * 2 + ("naive",),
    ]
    assert settings.student_runs("toxicity") == [
        ("gpt2-scratch", "smollm2-135m", "naive")
    ]  # generation: none
    assert [settings.control("safety", *r[:2]) for r in safety[2:]] == [
        "",
        "strong-to-strong",
        "weak-to-weak",
    ]
    assert Settings.from_config(DEFAULT).student_runs("safety") == safety[:3]  # none by default


def test_settings_hold_the_parsed_blocks():
    settings = Settings.from_config(DEFAULT)
    toxicity, legal = settings.tasks["toxicity"], settings.tasks["legal"]
    assert (
        toxicity.kind == "generation" and toxicity.corpus.format == "prompts" and toxicity.gold.samples == 4
    )
    assert toxicity.weak_models == ["gpt2-scratch"] and legal.weak_models == ["bow-200"]
    assert settings.tasks["safety"].student_strategies == [
        "naive",
        "logconf",
        "confident",
    ]  # the top-level list
    assert legal.own_lists == ("weak_models", "strong_models") and legal.decoding == specs.Decoding()
    assert (
        settings.models["gpt2-scratch"].spec.architecture == "gpt2"
        and settings.resources(None) == specs.Resources()
    )
    assert settings.strategies["logconf"] == specs.Strategy(loss="logconf", alpha=0.5)
    assert (
        settings.scorers["minilm-davidson"].train.epochs == 1 and settings.scorers["perspective"].data is None
    )
    assert settings.active_tasks() == ["legal", "safety", "toxicity"] and settings.preference_tasks() == []
    assert dataclasses.is_dataclass(settings) and type(settings).__dataclass_params__.frozen
