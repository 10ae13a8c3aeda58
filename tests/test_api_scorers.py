"""Web-API scorers at scale: how many texts each job sends (and so its runtime request), one job at a time per
API across the whole workflow, and a missing API key stopping a run before its first job."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from w2s_align.cluster import api_quota
from w2s_align.settings import validate
from w2s_align.settings.extensions import load_builtins
from w2s_align.settings.settings import Settings

from fakes import FakePerspective
from helpers import REPO, copy_repo, executed_rules, snakemake

read = Settings.from_config  # a config read as the workflow reads it at its start

load_builtins()


def layered(*names: str, **top) -> dict:
    """config.yaml with the overlays `names` merged in as Snakemake's --configfile does, then `top` keys."""

    def merge(base: dict, over: dict) -> dict:
        for key, value in over.items():
            base[key] = merge(dict(base.get(key) or {}), value) if isinstance(value, dict) else value
        return base

    config: dict = {}
    for name in ("config.yaml", *names):
        merge(config, yaml.safe_load((REPO / name).read_text()))
    return {**config, **top}


PAPER = layered("configs/paper.yaml")


def with_perspective(config: dict, **options) -> dict:
    """`config` with the toxicity task scored by the Perspective scorer (`options` added to its entry)."""
    config = copy.deepcopy(config)
    config["tasks"]["toxicity"]["scorer"] = "perspective"
    config["scorers"]["perspective"].update(options)
    return config


# --- volume and runtime (plain functions) ------------------------------------------------------


def test_texts_to_score_per_rule():
    # paper: 1000 evaluation prompts x 25 samples per run; default: 150 x 4
    assert api_quota.texts_to_score(read(PAPER), "toxicity", "score") == 25_000
    default = layered()
    assert api_quota.texts_to_score(read(default), "toxicity", "score") == 150 * 4
    # best of 4: four continuations of each held-out prompt (weak_label 320 + val 40)
    assert api_quota.texts_to_score(read(default), "toxicity", "best_of_n", 4) == (320 + 40) * 4
    with pytest.raises(ValueError, match="queries no scorer"):
        api_quota.texts_to_score(read(default), "toxicity", "weak_generations")
    with pytest.raises(ValueError, match="best_of"):
        api_quota.texts_to_score(read(default), "toxicity", "best_of_n")


def test_api_minutes_from_texts_and_qps():
    assert api_quota.scorer_qps(read(PAPER), "perspective") == 1.0  # config.yaml sets qps: 1
    assert (
        api_quota.api_minutes(read(PAPER), "perspective", 25_000) == math.ceil(25_000 / 60 * 1.2) + 10 == 510
    )
    fast = with_perspective(PAPER, qps=10)
    assert api_quota.api_minutes(read(fast), "perspective", 25_000) == 60
    no_qps = copy.deepcopy(PAPER)
    del no_qps["scorers"]["perspective"]["qps"]
    assert api_quota.scorer_qps(read(no_qps), "perspective") == 1.0  # the constructor's default


def dag_works(tmp_path, monkeypatch, *files: str, **overrides) -> tuple[dict, list]:
    """(config, Work of every job) of config.yaml + `files` + `overrides`, from Snakemake's DAG."""
    from w2s_align.cluster import plan

    work = copy_repo(tmp_path / "repo", REPO / "config.yaml")
    monkeypatch.chdir(work)
    config, jobs = plan.dag_jobs([str(REPO / f) for f in files], overrides)
    return config, [w for _, _, w in jobs]


def test_paper_api_volume(tmp_path, monkeypatch):
    config, works = dag_works(tmp_path, monkeypatch, "configs/paper.yaml")
    jobs = api_quota.api_jobs(config, works)
    # every scored run: weak (5 seeds), base, ceiling and student (6 strong models x 5 seeds each); the
    # preference track: DPO ceiling and 3 students of 2 policies x 5 seeds (judges: a TF-IDF and a hub model)
    assert len(jobs) == 95 + 40 and {j["rule"] for j in jobs} == {"score_generations"}
    assert {(j["scorer"], j["kind"], j["texts"], j["minutes"]) for j in jobs} == {
        ("perspective", "perspective", 25_000, 510)
    }
    volume = api_quota.api_volume(config, works)
    assert set(volume) == {"perspective"}
    assert volume["perspective"]["jobs"] == 135 and volume["perspective"]["texts"] == 3_375_000
    assert volume["perspective"]["api_hours"] == pytest.approx(3_375_000 / 3600)  # ~940 h at 1 qps
    assert volume["perspective"]["runtime_hours"] == pytest.approx(135 * 510 / 60)
    assert api_quota.api_scorers(config) == ["perspective"]
    assert api_quota.api_scorers(read(layered("configs/paper.yaml", only=["safety", "legal"]))) == []
    assert api_quota.api_scorers(read(layered())) == []  # the default scorers are trained classifiers


def test_best_of_n_with_an_api_selector_is_an_api_job(tmp_path, monkeypatch):
    config, works = dag_works(
        tmp_path,
        monkeypatch,
        "configs/strategies.yaml",
        strategies={"best-of-4": {"selector": "perspective"}},
    )
    jobs = api_quota.api_jobs(config, works)
    assert [(j["rule"], j["task"], j["texts"]) for j in jobs] == [("best_of_n", "toxicity", (320 + 40) * 4)]
    assert api_quota.api_scorers(config) == ["perspective"]


def test_api_request_adds_the_api_resource_and_sizes_the_runtime():
    config = with_perspective(PAPER)
    base = {
        "gpu": 0,
        "mem_mb": lambda wc, attempt: 8000 * attempt,
        "runtime": lambda wc, attempt: 30 * attempt,
    }
    score = api_quota.api_request(read(config), "score", base)
    api = {"task": "toxicity", "scorer": "perspective", "model_run": "weak/gpt2/seed0"}
    trained = {**api, "scorer": "minilm-davidson"}
    assert score["perspective_api"](api) == 1 and score["perspective_api"](trained) == 0
    assert score["runtime"](api, attempt=1) == 510 and score["runtime"](api, attempt=2) == 1020
    assert score["runtime"](trained, attempt=2) == 60  # not an API: the model's request
    assert score["gpu"] == 0 and score["mem_mb"] is base["mem_mb"]
    best = api_quota.api_request(read(config), "best_of_n", base)
    selector = {"task": "toxicity", "scorer": "perspective", "n": "4", "weak": "gpt2", "seed": "0"}
    # generation (the weak LM's request) + 4 continuations of 10,000 weak_label and 1,000 val prompts at 1 qps
    assert best["runtime"](selector, attempt=1) == 30 + math.ceil(44_000 / 60 * 1.2) + 10 == 920


def test_missing_api_keys_names_the_variable():
    config = with_perspective(PAPER)
    message = validate.missing_api_keys(read(config), ["perspective", "minilm-davidson"], {})
    assert "PERSPECTIVE_API_KEY is not set" in message and "'perspective'" in message
    assert len(message.splitlines()) == 1
    assert validate.missing_api_keys(read(config), ["perspective"], {"PERSPECTIVE_API_KEY": "  "}) == message
    assert validate.missing_api_keys(read(config), ["perspective"], {"PERSPECTIVE_API_KEY": "k"}) is None
    assert (
        validate.missing_api_keys(read(config), ["minilm-davidson", "toxic-bert"], {}) is None
    )  # no key needed


# --- the workflow: shared limit and the key check ----------------------------------------------

RUNS = ["weak/tiny-gpt2/seed0", "base/smollm2-135m/seed0", "ceiling/smollm2-135m/seed0"]
TEXTS = 12  # per job
QPS = 4.0


def perspective_tiny(work: Path, **options) -> None:
    """The tiny config, toxicity only, scored by the Perspective scorer with `options`."""
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["tasks"] = {"toxicity": cfg["tasks"]["toxicity"]}
    cfg["tasks"]["toxicity"]["scorer"] = "perspective"
    cfg["scorers"]["perspective"] = {"kind": "perspective", "max_retries": 0, "timeout": 5, **options}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def three_runs(work: Path, url: str) -> list[str]:
    """Hand-made continuations of three runs, TEXTS each, to score with the Perspective scorer at `url`
    (QPS): the targets. With --allowed-rules score_generations, the generations count as source files."""
    perspective_tiny(work, url=url, qps=QPS)
    for i, run in enumerate(RUNS):
        folder = work / "results/toxicity" / run
        folder.mkdir(parents=True)
        texts = [f"job{i} text {k}" for k in range(TEXTS)]
        pd.DataFrame({"prompt_id": range(TEXTS), "sample": 0, "continuation": texts}).to_parquet(
            folder / "generations.parquet"
        )
    return [f"results/toxicity/{run}/toxicity_perspective.parquet" for run in RUNS]


def score_three_runs(work: Path, url: str, *args: str):
    """Score the three runs concurrently if allowed: `--cores 3`, one thread per job."""
    return snakemake(
        work,
        *three_runs(work, url),
        "--cores",
        "3",
        "--set-threads",
        "score_generations=1",
        "--allowed-rules",
        "score_generations",
        *args,
        check=False,
        env={"PERSPECTIVE_API_KEY": "test-key"},
    )


def job_windows(api: FakePerspective) -> list[tuple[float, float]]:
    """(first, last) arrival time of each job's requests."""
    times: dict[str, list[float]] = {}
    for request in api.requests:
        times.setdefault(request["body"]["comment"]["text"].split()[0], []).append(request["time"])
    return sorted((min(t), max(t)) for t in times.values())


def test_api_jobs_run_one_at_a_time(workflow_copy):
    """Three scoring jobs that could run at once share one perspective_api unit: one after another, each at
    the full qps (without the limit their requests overlap: the next test)."""
    with FakePerspective(score=0.2) as api:
        proc = score_three_runs(workflow_copy, api.url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert executed_rules(proc).count("score_generations") == 3
    assert len(api.requests) == 3 * TEXTS  # none retried
    arrivals = sorted(r["time"] for r in api.requests)
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert min(gaps) >= 1 / QPS - 0.05, gaps  # one quota for all jobs: never faster than qps (jitter: 50 ms)
    windows = job_windows(api)
    assert all(end < start for (_, end), (start, _) in zip(windows, windows[1:])), windows  # no overlap


def test_resources_option_replaces_the_limit(workflow_copy):
    """--resources perspective_api=2 replaces the workflow's limit of 1: two jobs query at once."""
    with FakePerspective(score=0.2) as api:
        proc = score_three_runs(workflow_copy, api.url, "--resources", "perspective_api=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(api.requests) == 3 * TEXTS
    windows = job_windows(api)
    assert any(start < end for (_, end), (start, _) in zip(windows, windows[1:])), windows  # two at once


def test_missing_api_key_stops_a_run_before_any_job_and_warns_on_a_dry_run(workflow_copy):
    """No PERSPECTIVE_API_KEY: a dry run warns and goes on (the DAG can be checked, e.g. of
    configs/paper.yaml);
    a real run stops before its first job with one line naming the variable."""
    perspective_tiny(workflow_copy)
    env = {"PERSPECTIVE_API_KEY": ""}
    dry = snakemake(workflow_copy, "-n", check=False, env=env)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "Warning: the environment variable PERSPECTIVE_API_KEY is not set" in dry.stdout + dry.stderr
    proc = snakemake(workflow_copy, "--cores", "1", check=False, env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    errors = [line for line in output.splitlines() if line.startswith("the environment variable")]
    assert errors and "PERSPECTIVE_API_KEY" in errors[0], output[-3000:]
    assert executed_rules(proc) == [] and not (workflow_copy / "results").exists()
    # with the key the check passes (dry run: no warning)
    ok = snakemake(workflow_copy, "-n", env={"PERSPECTIVE_API_KEY": "some-key"})
    assert "PERSPECTIVE_API_KEY" not in ok.stdout + ok.stderr
