"""The SLURM profile (`snakemake --profile slurm`): resources per job in dry runs (no SLURM needed),
then the tiny config on a real one-node SLURM cluster started by tests/slurm/start_slurm.sh."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_api_scorers import TEXTS, job_windows, three_runs

from w2s_align.cluster import api_quota
from w2s_align.settings import paths as layout
from w2s_align.settings.extensions import load_builtins
from w2s_align.settings.settings import Settings
from w2s_align.settings.specs import Resources

from fakes import FakePerspective
from helpers import REPO, SHIMS, SNAKEMAKE, copy_repo, snakemake

load_builtins()

# Rules whose jobs declare gpu, cpus_per_gpu, mem_mb and runtime, each from one model's registry entry
# (`models.<name>.resources`): rule -> (what names the model, share of its mem_mb, share of its runtime).
#   weak / strong: that wildcard; model_run: the model of a run folder (ceiling/<strong>/...,
#   student/<weak>__<strong>/..., and for lm_generations also weak/<weak>/...); reference_lm: the task's
#   reference LM; scorer: a trained scorer's `model`, no model (DEFAULT_REQUEST) for the others (API / hub
#   scorers). Inference jobs ask for their model's memory and half its time.
MODEL_REQUESTS = {
    "train_weak": ("weak", 1, 1),
    "weak_labels": ("weak", 1, 0.5),
    "train_ceiling": ("strong", 1, 1),
    "train_student": ("strong", 1, 1),
    "predict": ("model_run", 1, 0.5),
    "train_weak_lm": ("weak", 1, 1),
    "weak_generations": ("weak", 1, 0.5),
    "best_of_n": ("weak", 1, 0.5),
    "train_lm_ceiling": ("strong", 1, 1),
    "train_lm_student": ("strong", 1, 1),
    "lm_generations": ("model_run", 1, 0.5),
    "base_generations": ("strong", 1, 0.5),
    "perplexity": ("reference_lm", 1, 0.5),
    "train_scorer": ("scorer", 1, 1),
    "score_generations": ("scorer", 1, 0.5),
    "gold_corpus": ("gold_generator", 1, 1),
    "preference_candidates": ("preference_generator", 1, 0.5),
    "judge_candidates": ("scorer", 1, 0.5),
    "train_dpo_ceiling": ("strong", 1, 1),
    "train_dpo_student": ("strong", 1, 1),
    "reference_pair_logps": ("strong", 1, 0.5),
    "pair_logps": ("model_run", 1, 0.5),
}
GPU_RULES = set(MODEL_REQUESTS)
CLASSIFICATION_GPU_RULES = {"train_weak", "weak_labels", "train_ceiling", "train_student", "predict"}
GENERATION_GPU_RULES = GPU_RULES - CLASSIFICATION_GPU_RULES
LOCAL_RULES = {
    "all",
    "split_data",
    "split_corpus",
    "eval_prompts",
    "ensemble_labels",
    "metrics",
    "toxicity_metrics",
    "gold_test_pairs",
    "preference_metrics",
    "summary",
    "plots",
}  # the Snakefile's localrules
LIGHT_RULES = {
    "convert_gguf",
    "unpack_archive",
}  # SLURM jobs with gpu=0: the model's memory, half its runtime
ALL_RULES = GPU_RULES | LOCAL_RULES | LIGHT_RULES
PREFERENCE_RULES = {
    "preference_candidates",
    "judge_candidates",
    "train_dpo_ceiling",
    "train_dpo_student",
    "gold_test_pairs",
    "reference_pair_logps",
    "pair_logps",
    "preference_metrics",
}
OPTIONAL_RULES = {
    "unpack_archive",  # only with a model from a split archive
    "best_of_n",
    "ensemble_labels",
    "gold_corpus",  # only with best-of-N / ensembles / corpus.gold
    *PREFERENCE_RULES,
}  # / a preferences block
DEFAULT_REQUEST = dataclasses.asdict(Resources())  # jobs of no model (API scorers); also each model's default
PROFILE_ENV = (
    "W2S_SLURM_ACCOUNT",
    "W2S_SLURM_GPU_MODEL",
    "W2S_SLURM_GPU_CONSTRAINT",
    "W2S_SLURM_GRES",
    "SNAKEMAKE_SLURM_PARTITIONS",
)
# command-line settings that decide where and how jobs run: the SLURM profile's business, never the
# workflow profile's (profiles/default is loaded under --profile slurm too)
SCHEDULING_KEYS = {
    "executor",
    "cores",
    "jobs",
    "local-cores",
    "default-resources",
    "set-resources",
    "resources",
    "set-threads",
    "retries",
    "latency-wait",
    "keep-going",
    "rerun-incomplete",
    "profile",
    "workflow-profile",
    "slurm-partition-config",
}
# a distinct request per model (halves included), so that a job charged to the wrong model shows
DISTINCT_REQUESTS = """models:
  gpt2-scratch: {resources: {mem_mb: 1000, runtime: 10}}
  minilm-l6: {resources: {mem_mb: 2600, runtime: 26}}
  minilm-l6-pairs: {resources: {mem_mb: 3000, runtime: 30}}
  smollm2-135m: {resources: {mem_mb: 7000, runtime: 70}}
  tfidf: {resources: {mem_mb: 11000, runtime: 110}}
"""
# an ensemble weak model (TF-IDF + the scratch GPT-2) on the classification tasks: its labels are averaged
# by ensemble_labels, a local rule
ENSEMBLE = """models:
  ens: {kind: ensemble, members: [gpt2-scratch, tfidf]}
weak_models: [gpt2-scratch, ens]
"""

# a strong model unpacked from a split archive (the ladder's mpnet), beside legal's MiniLM
ARCHIVE = f"""models:
  archived: {{kind: pretrained, path: some-model, resources: {{mem_mb: 4400, runtime: 44}},
             archive: {{parts: [parts/some-model.zip.001], sha256: "{"ab" * 32}"}}}}
tasks:
  legal: {{strong_models: [minilm-l6-pairs, archived]}}
"""


def profile_copy(dest: Path, config: str | None = None) -> Path:
    """A repository copy with the profile and configs; config.yaml is the default one unless `config`."""
    copy_repo(dest)
    shutil.copy2(REPO / (config or "config.yaml"), dest / "config.yaml")
    for name in ("slurm", "configs", "tests/slurm"):
        shutil.copytree(REPO / name, dest / name)
    return dest


def parse_jobs(out: str) -> list[dict]:
    """One dict per job block that Snakemake printed: rule, local, wildcards, resources."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(local)?rule (\w+):", block)
        if not m:
            continue
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, flags=re.M))
        jobs.append(
            {
                "rule": m.group(2),
                "local": bool(m.group(1)),
                "wildcards": dict(kv.split("=", 1) for kv in fields.get("wildcards", "").split(", ") if kv),
                "resources": dict(kv.split("=", 1) for kv in fields.get("resources", "").split(", ") if kv),
            }
        )
    return jobs


def rule_counts(jobs: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job["rule"]] = counts.get(job["rule"], 0) + 1
    return counts


def slurm_comment(job: dict) -> str:
    """The --comment the SLURM executor gives a job (slashes of wildcard values become underscores)."""
    wildcards = "_".join(job["wildcards"].values()).replace("/", "_")
    return f"rule_{job['rule']}_wildcards_{wildcards}" if wildcards else f"rule_{job['rule']}"


def layered_config(*configs: Path) -> dict:
    """The config after layering `configs` as Snakemake does (--configfile: nested mappings merged)."""

    def merge(base: dict, over: dict) -> dict:
        for key, value in over.items():
            base[key] = merge(dict(base.get(key) or {}), value) if isinstance(value, dict) else value
        return base

    config: dict = {}
    for path in configs:
        merge(config, yaml.safe_load(path.read_text()) or {})
    return config


def model_resources(config: dict) -> dict[str, dict]:
    """The `resources` of every model, with the defaults of w2s_align.settings.specs.Resources."""
    return {
        name: dataclasses.asdict(Resources.from_dict(spec.get("resources")))
        for name, spec in config["models"].items()
    }


def request_model(job: dict, config: dict) -> str | None:
    """The model whose registry entry sizes this job (None: an API or hub scorer, DEFAULT_REQUEST)."""
    wc, rule = job["wildcards"], job["rule"]
    source = MODEL_REQUESTS[rule][0]
    if source in ("weak", "strong"):
        return wc[source]
    if (
        source == "model_run"
    ):  # ceiling/<strong>/seedN, student/<weak>__<strong>/<strategy>/seedN, weak/<weak>/seedN
        stage, models = wc["model_run"].split("/")[:2]
        stages = {
            "lm_generations": ("weak", "ceiling", "student", "dpo-ceiling", "dpo-student"),
            "pair_logps": ("dpo-ceiling", "dpo-student"),
        }.get(rule, ("ceiling", "student"))
        assert stage in stages, job
        return models.split("__")[1] if stage.endswith("student") else models
    if source == "reference_lm":
        return config["tasks"][wc["task"]]["reference_lm"]
    if source == "gold_generator":
        return config["tasks"][wc["task"]]["corpus"]["gold"]["generator"]
    if source == "preference_generator":
        return config["tasks"][wc["task"]]["preferences"]["generator"]
    scorer = config["scorers"][wc["scorer"]]
    return scorer["model"] if scorer["kind"] == "trained" else None


SCORING_RULES = {
    "score_generations": "score",
    "best_of_n": "best_of_n",
    "judge_candidates": "judge",
}  # rule: kind


def check_requests(jobs: list[dict], config: dict) -> None:
    """GPU on the jobs of the model rules unless the model is TF-IDF (or an API scorer); memory and time
    from the registry entry of the job's own model; local rules ask for no GPU, light rules for gpu=0."""
    models, settings = model_resources(config), Settings.from_config(config)
    for job in jobs:
        res, rule = job["resources"], job["rule"]
        assert rule in ALL_RULES, f"rule {rule} is new: add it to MODEL_REQUESTS, LOCAL_RULES or LIGHT_RULES"
        if rule in LOCAL_RULES:
            assert "gpu" not in res and "cpus_per_gpu" not in res, job
            continue
        if rule in LIGHT_RULES:
            local = layout.gguf_models(settings) | layout.archive_models(settings)
            request = models[local[job["wildcards"]["gguf"]]]  # the first entry naming it
            assert res.get("gpu", "0") == "0", job
            assert (int(res["mem_mb"]), int(res["runtime"])) == (
                request["mem_mb"],
                max(1, round(request["runtime"] * 0.5)),
            ), job
            continue
        model = request_model(job, config)
        scorer = config["scorers"].get(job["wildcards"].get("scorer"), {})
        if rule in ("score_generations", "judge_candidates") and scorer.get("kind") == "hf":
            gpu = "1"  # a hub classifier
        else:
            gpu = "0" if model is None or config["models"][model]["kind"] == "tfidf" else "1"
        assert res["gpu"] == gpu, job
        assert "cpus_per_gpu" in res, job
        request = models[model] if model else DEFAULT_REQUEST
        _, mem_share, time_share = MODEL_REQUESTS[rule]
        assert int(res["mem_mb"]) == max(1, round(request["mem_mb"] * mem_share)), (model, job)
        runtime = max(1, round(request["runtime"] * time_share))
        if rule in SCORING_RULES:  # one unit of perspective_api if it queries that API (else 0)
            wc = job["wildcards"]
            api = api_quota.api_kind(settings, wc["scorer"])
            assert res["perspective_api"] == str(int(api == "perspective")), job
            if api:  # a web API: runtime from the texts it sends (tests/test_api_scorers.py)
                kind = SCORING_RULES[rule]
                texts = api_quota.texts_to_score(
                    settings, wc["task"], kind, int(wc["n"]) if "n" in wc else None
                )
                runtime = api_quota.api_minutes(settings, wc["scorer"], texts) + (
                    runtime if rule == "best_of_n" else 0
                )
        else:
            assert "perspective_api" not in res, job
        assert int(res["runtime"]) == runtime, (model, job)


def profile_gpu_rules() -> set[str]:
    """The `gpu_rules` list of slurm/config.yaml (a YTE definition)."""
    definitions = yaml.safe_load((REPO / "slurm/config.yaml").read_text())["__definitions__"]
    line = next(d for d in definitions if d.startswith("gpu_rules ="))
    return set(ast.literal_eval(line.split("=", 1)[1].strip()))


@pytest.fixture
def clean_env(monkeypatch):
    for name in PROFILE_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def default_copy(tmp_path_factory) -> Path:
    return profile_copy(tmp_path_factory.mktemp("profile"))


# ---------------------------------------------------------------- dry runs: no SLURM needed


def test_workflow_profile_leaves_scheduling_to_the_slurm_profile():
    """profiles/default is loaded under --profile slurm too: it may set rerun behaviour, nothing that
    decides where or how jobs run."""
    assert (REPO / "slurm/config.yaml").is_file()
    assert not (REPO / "workflow/profiles/default").exists()  # one workflow profile
    workflow_profile = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text()) or {}
    slurm_profile = yaml.safe_load((REPO / "slurm/config.yaml").read_text())
    assert not set(workflow_profile) & (SCHEDULING_KEYS | set(slurm_profile)), workflow_profile
    # code changes rerun through each rule's `code` param (fingerprints), not script modification times
    assert "code" not in workflow_profile.get("rerun-triggers", [])


def test_rules_are_classified_and_the_profile_lists_the_gpu_rules(default_copy, clean_env):
    """Every rule of the workflow is a GPU (model) rule, a local rule or a light rule, and the profile's
    gpu_rules (which get the cluster's GPU model, constraint or gres) are exactly the GPU rules."""
    rules = {
        line.split()[0]
        for line in snakemake(default_copy, "--list-rules").stdout.splitlines()
        if line and not line.startswith(("Using ", " "))
    }
    assert rules == ALL_RULES
    assert profile_gpu_rules() == GPU_RULES
    assert not GPU_RULES & LOCAL_RULES and not LIGHT_RULES & (GPU_RULES | LOCAL_RULES)


def test_default_config_asks_for_gpus_on_training_jobs_only(default_copy, clean_env):
    proc = snakemake(default_copy, "--profile", "slurm", "-n")
    assert "Using profiles slurm and workflow specific profile profiles/default" in proc.stdout + proc.stderr
    jobs = parse_jobs(proc.stdout)
    # the toxicity (generation) task is part of the default config; best-of-N strategies and ensembles are not
    assert ALL_RULES - OPTIONAL_RULES <= {j["rule"] for j in jobs} <= ALL_RULES
    check_requests(jobs, layered_config(default_copy / "config.yaml"))
    # evaluation generations of the weak LM too (each run's request:
    # test_jobs_take_requests_from_their_own_model)
    runs = {
        j["wildcards"]["model_run"].split("/")[0]: j["resources"]
        for j in jobs
        if j["rule"] == "lm_generations"
    }
    assert set(runs) == {"weak", "ceiling", "student"}


def test_tiny_config_tfidf_jobs_ask_for_no_gpu(default_copy, clean_env):
    jobs = parse_jobs(
        snakemake(default_copy, "--profile", "slurm", "-n", "--configfile", "tests/configs/tiny.yaml").stdout
    )
    assert ALL_RULES - OPTIONAL_RULES <= {j["rule"] for j in jobs} <= ALL_RULES
    check_requests(
        jobs, layered_config(default_copy / "config.yaml", default_copy / "tests/configs/tiny.yaml")
    )
    assert {j["resources"]["gpu"] for j in jobs if j["rule"] in CLASSIFICATION_GPU_RULES - {"predict"}} == {
        "0",
        "1",
    }
    assert {j["resources"]["gpu"] for j in jobs if j["rule"] == "predict"} == {"1"}  # strong: small-bert
    # the tiny toxicity task scores with a TF-IDF scorer: trained and applied without a GPU
    assert {j["resources"]["gpu"] for j in jobs if j["rule"] in ("train_scorer", "score_generations")} == {
        "0"
    }
    assert {
        j["resources"]["gpu"]
        for j in jobs
        if j["rule"] in GENERATION_GPU_RULES - {"train_scorer", "score_generations"}
    } == {"1"}


def test_jobs_take_requests_from_their_own_model(default_copy, clean_env):
    """Every model with its own request: each job must carry the one of the model the rule names. With
    best-of-N strategies and an ensemble weak model, every rule of the workflow has jobs."""
    (default_copy / "distinct-requests.yaml").write_text(DISTINCT_REQUESTS)
    (default_copy / "ensemble.yaml").write_text(ENSEMBLE)
    (default_copy / "all-tasks.yaml").write_text("only: []\n")
    (default_copy / "archive.yaml").write_text(ARCHIVE)
    # the preference track on every task (not only toxicity); strategies: best-of-N with two selectors;
    # layered
    # files go after one --configfile (repeating the flag keeps only the last)
    layers = (
        "configs/preferences.yaml",
        "all-tasks.yaml",
        "configs/strategies.yaml",
        "distinct-requests.yaml",
        "ensemble.yaml",
        "archive.yaml",
    )
    jobs = parse_jobs(snakemake(default_copy, "--profile", "slurm", "-n", "--configfile", *layers).stdout)
    assert {j["rule"] for j in jobs} == ALL_RULES
    check_requests(jobs, layered_config(default_copy / "config.yaml", *(default_copy / f for f in layers)))
    scorers = {j["wildcards"]["scorer"]: j["resources"]["gpu"] for j in jobs if j["rule"] == "train_scorer"}
    assert scorers == {
        "minilm-davidson": "1",
        "minilm-davidson-gold": "1",
        "tfidf-davidson": "0",
        "tfidf-davidson-300": "0",
    }  # the TF-IDF selector and weak judge need no GPU
    best_of = {j["wildcards"]["scorer"]: j["resources"] for j in jobs if j["rule"] == "best_of_n"}
    assert set(best_of) == {"minilm-davidson", "tfidf-davidson"}
    assert {(r["gpu"], r["mem_mb"], r["runtime"]) for r in best_of.values()} == {
        ("1", "1000", "5")
    }  # weak LM's
    # weak-model generations of the evaluation prompts: the weak LM's request, not the strong model's
    weak_runs = [
        j["resources"]
        for j in jobs
        if j["rule"] == "lm_generations" and j["wildcards"]["model_run"].startswith("weak/")
    ]
    assert weak_runs and {(r["mem_mb"], r["runtime"]) for r in weak_runs} == {("1000", "5")}
    # predictions of ceilings and students: the strong classifier's (safety: minilm-l6, legal:
    # minilm-l6-pairs and the archived model)
    assert {
        (j["wildcards"]["task"], j["resources"]["mem_mb"], j["resources"]["runtime"])
        for j in jobs
        if j["rule"] == "predict"
    } == {("safety", "2600", "13"), ("legal", "3000", "15"), ("legal", "4400", "22")}
    assert {j["wildcards"]["weak"] for j in jobs if j["rule"] == "ensemble_labels"} == {"ens"}


# the default config's 150 prompts x 4 samples at 1 qps: ceil(600 / 60 x 1.2) + 10 minutes
@pytest.mark.parametrize("scorer,gpu,runtime", [("perspective", "0", 22), ("toxic-bert", "1", 30)])
def test_api_and_hub_scorers_ask_for_the_default_request(default_copy, clean_env, scorer, gpu, runtime):
    """Scorers without a registry model (an API, a hub classifier) are charged as a default-size model; an
    API scorer's runtime comes from the texts it sends."""
    overlay = default_copy / f"scorer-{scorer}.yaml"
    overlay.write_text(f"tasks: {{toxicity: {{scorer: {scorer}}}}}\n")
    layers = ("distinct-requests.yaml", overlay.name)
    (default_copy / layers[0]).write_text(DISTINCT_REQUESTS)
    jobs = parse_jobs(snakemake(default_copy, "--profile", "slurm", "-n", "--configfile", *layers).stdout)
    check_requests(jobs, layered_config(default_copy / "config.yaml", *(default_copy / f for f in layers)))
    assert {j["wildcards"]["scorer"] for j in jobs if j["rule"] == "train_scorer"} == {
        "minilm-davidson-gold"
    }  # judge
    scoring = [j["resources"] for j in jobs if j["rule"] == "score_generations"]
    assert len(scoring) == 4  # weak, base, ceiling, student
    assert {(r["gpu"], r["mem_mb"], r["runtime"]) for r in scoring} == {
        (gpu, str(DEFAULT_REQUEST["mem_mb"]), str(runtime))
    }


def test_paper_config_dag(default_copy, clean_env):
    proc = snakemake(default_copy, "--profile", "slurm", "-n", "--configfile", "configs/paper.yaml")
    jobs = parse_jobs(proc.stdout)
    print(f"paper DAG: {len(jobs)} jobs")
    # classification: 2 tasks x 5 seeds; 6 strong models; 3 strategies; predictions of every ceiling and
    #   student (60 + 180)
    # toxicity: 5 seeds, 1 weak (GPT-2) x 6 strong LMs x 1 strategy; evaluation prompts shared by the seeds;
    #   generations of weak (5), base, ceiling, student (30 each), each scored (Perspective: no scorer
    #   training) and its perplexity measured under GPT-2 XL
    assert rule_counts(jobs) == {
        "split_data": 10,
        "train_weak": 10,
        "weak_labels": 10,
        "train_ceiling": 60,
        "train_student": 180,
        "predict": 240,
        "metrics": 180,
        "summary": 1,
        "plots": 1,
        "all": 1,
        "split_corpus": 5,
        "eval_prompts": 1,
        "train_weak_lm": 5,
        "weak_generations": 5,
        "train_lm_ceiling": 30,
        "train_lm_student": 30,
        "base_generations": 30,
        "lm_generations": 65 + 40,
        "perplexity": 95 + 40,
        "score_generations": 95 + 40,
        "toxicity_metrics": 30,
        # the preference track: candidates once, 2 judges (the TF-IDF one trained), DPO ceiling and 3 students
        # of
        # 2 policies x 5 seeds, their generations, scores, perplexities and pair log-probs (+ the 2 bases')
        "preference_candidates": 1,
        "train_scorer": 1,
        "judge_candidates": 2,
        "gold_test_pairs": 1,
        "train_dpo_ceiling": 10,
        "train_dpo_student": 30,
        "reference_pair_logps": 2,
        "pair_logps": 40,
        "preference_metrics": 30,
    }
    config = layered_config(default_copy / "config.yaml", default_copy / "configs/paper.yaml")
    check_requests(jobs, config)
    # Perspective: 1,000 prompts x 25 samples at 1 qps each, one job at a time (tests/test_api_scorers.py)
    assert {
        (j["resources"]["runtime"], j["resources"]["perspective_api"])
        for j in jobs
        if j["rule"] == "score_generations"
    } == {("510", "1")}
    models = model_resources(config)
    assert models["qwen2.5-7b"]["mem_mb"] > models["gpt2-medium"]["mem_mb"]


def test_cluster_values_come_from_the_environment(default_copy, clean_env):
    clean_env.setenv("W2S_SLURM_ACCOUNT", "12345")
    clean_env.setenv("W2S_SLURM_GPU_MODEL", "a100")
    clean_env.setenv("W2S_SLURM_GPU_CONSTRAINT", "a100|h100")
    jobs = parse_jobs(snakemake(default_copy, "--profile", "slurm", "-n").stdout)
    assert {j["rule"] for j in jobs} >= (
        CLASSIFICATION_GPU_RULES | LOCAL_RULES | LIGHT_RULES
    ) - OPTIONAL_RULES
    for job in jobs:
        res = job["resources"]
        assert res["slurm_account"] == "12345"
        if job["rule"] in CLASSIFICATION_GPU_RULES:
            assert (res.get("gpu_model"), res.get("constraint")) == ("a100", "a100|h100"), job
        elif job["rule"] not in GPU_RULES:  # generation GPU rules: test_cluster_values_reach_every_gpu_job
            assert (res.get("gpu_model"), res.get("constraint"), res.get("gres")) == (None, None, None), job
    clean_env.setenv("W2S_SLURM_GRES", "1")  # gres-only clusters: --gres instead of --gpus
    for job in parse_jobs(snakemake(default_copy, "--profile", "slurm", "-n").stdout):
        if job["rule"] in CLASSIFICATION_GPU_RULES:
            assert job["resources"]["gpu"] == "0" and job["resources"]["gres"] == "gpu:a100:1", job
        elif job["rule"] not in GPU_RULES:
            assert "gres" not in job["resources"] and job["resources"].get("gpu", "0") == "0", job


def test_cluster_values_reach_every_gpu_job(default_copy, clean_env):
    """Every job that asks for a GPU (generation rules too) gets the cluster's GPU model and constraint,
    and on gres-only clusters asks through --gres, never --gpus."""
    plain = {
        (j["rule"], tuple(j["wildcards"].items())): j["resources"]["gpu"]
        for j in parse_jobs(snakemake(default_copy, "--profile", "slurm", "-n").stdout)
        if j["rule"] in GPU_RULES
    }
    models = yaml.safe_load((default_copy / "config.yaml").read_text())["models"]
    bow = {  # safety's and legal's weak supervisors are bags of words (bow-10, bow-200): no GPU
        key
        for key in plain
        if key[0] in ("train_weak", "weak_labels") and models[dict(key[1])["weak"]]["kind"] == "tfidf"
    }
    assert {dict(key[1])["task"] for key in bow} == {"safety", "legal"}
    assert {rule for rule, _ in plain} >= GENERATION_GPU_RULES - OPTIONAL_RULES
    assert {plain[k] for k in bow} == {"0"} and {v for k, v in plain.items() if k not in bow} == {"1"}
    clean_env.setenv("W2S_SLURM_GPU_MODEL", "a100")
    clean_env.setenv("W2S_SLURM_GPU_CONSTRAINT", "a100|h100")
    for job in parse_jobs(snakemake(default_copy, "--profile", "slurm", "-n").stdout):
        if job["rule"] in GPU_RULES:
            assert (job["resources"].get("gpu_model"), job["resources"].get("constraint")) == (
                "a100",
                "a100|h100",
            ), job
    clean_env.setenv("W2S_SLURM_GRES", "1")
    for job in parse_jobs(snakemake(default_copy, "--profile", "slurm", "-n").stdout):
        if job["rule"] in GPU_RULES:
            assert job["resources"]["gpu"] == "0" and job["resources"].get("gres") == "gpu:a100:1", job


# ---------------------------------------------------------------- a real one-node SLURM cluster

SLURM_FLAGS = [  # test cluster without accounting (no sacct): poll squeue, shortly after each job
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "8",
]
SMALL_REQUESTS = """# the test cluster's node has 4000 MB; each request >= 80% of the plan's estimate
models:
  tfidf: {resources: {mem_mb: 300, runtime: 10}}
  tiny-gpt2: {resources: {mem_mb: 700, runtime: 10}}
  small-bert: {resources: {mem_mb: 700, runtime: 20}}
  smollm2-135m: {resources: {mem_mb: 1900, runtime: 20}}
"""
RUN_LIMIT = 1200  # seconds for the tiny config (toxicity: SmolLM2-135M fine-tuned and sampled on CPU)


def cluster_env(**extra: str) -> dict[str, str]:
    """The environment without the profile's variables and without the failing `scontrol` stand-in of
    tests/bin (however it got on PATH), so that SLURM's own tools answer."""
    path = [p for p in os.environ["PATH"].split(os.pathsep) if p and Path(p).resolve() != SHIMS.resolve()]
    return {
        **{k: v for k, v in os.environ.items() if k not in PROFILE_ENV},
        "PATH": os.pathsep.join(path),
        **extra,
    }


def time_limit(minutes: int) -> str:
    """SLURM's TimeLimit for `minutes` (under a day)."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def run_slurm(workdir: Path, *args: str, limit: int = RUN_LIMIT, **env: str) -> subprocess.CompletedProcess:
    """`snakemake --profile slurm` with the test cluster's flags (and environment variables `env`);
    interrupted (SIGINT) after `limit` s.

    Jobs import the copy's own package (PYTHONPATH), i.e. the code under test."""
    env = cluster_env(HF_HUB_OFFLINE="1", PYTHONPATH=str(workdir / "src"), **env)
    cmd = [
        "timeout",
        "-s",
        "INT",
        "-k",
        "15",
        str(limit),
        SNAKEMAKE,
        "--profile",
        "slurm",
        *SLURM_FLAGS,
        *args,
    ]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)


def slurm_jobs(workdir: Path) -> dict[str, dict]:
    """SLURM's record (`scontrol -d show job`) of every job that ran in `workdir`, by job id."""
    out = subprocess.run(
        ["scontrol", "-d", "-o", "show", "job"], capture_output=True, text=True, check=True, env=cluster_env()
    ).stdout
    jobs = {}
    for line in out.splitlines():
        rec = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if rec.get("WorkDir") == str(workdir):
            jobs[rec["JobId"]] = rec
    return jobs


def job_completions(state: Path) -> dict[str, dict]:
    """SLURM's job completion log (jobcomp/filetxt), by job id."""
    lines = (state / "log/jobcomp.log").read_text().splitlines()
    recs = [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in lines]
    return {r["JobId"]: r for r in recs}


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running single-node SLURM (cpu and gpu partitions, fake GPUs); stopped by pid afterwards."""
    if not sys.platform.startswith("linux") or shutil.which("bash") is None:
        pytest.skip("the SLURM test needs Linux with bash")
    state = tmp_path_factory.mktemp("slurm-state")
    start = subprocess.run(
        ["bash", str(REPO / "tests/slurm/start_slurm.sh"), str(state)],
        capture_output=True,
        text=True,
        timeout=600,
        env=cluster_env(),
    )
    if start.returncode == 3:  # nothing was started
        pytest.skip(f"cannot start a test SLURM cluster here: {start.stderr.strip()}")
    try:
        assert start.returncode == 0, f"start_slurm.sh failed:\n{start.stdout}\n{start.stderr}"
        yield state
    finally:
        subprocess.run(
            ["bash", str(REPO / "tests/slurm/stop_slurm.sh"), str(state)], timeout=120, env=cluster_env()
        )


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    """The tiny config (safety and toxicity) run to completion through SLURM: (workdir, output, seconds).
    The smallest run with a job of every non-optional rule: safety with one weak model (TF-IDF, no GPU) and
    one strategy runs every classification rule, toxicity every generation rule."""
    work = profile_copy(tmp_path_factory.mktemp("slurm-run"), "tests/configs/tiny.yaml")
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    del cfg["tasks"]["legal"]
    cfg["weak_models"] = ["tfidf"]  # toxicity keeps its own weak LM (tiny-gpt2)
    cfg["student_strategies"] = ["naive"]
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (work / "slurm-test.yaml").write_text(SMALL_REQUESTS)
    start = time.perf_counter()
    proc = run_slurm(work, "--configfile", "slurm-test.yaml")
    seconds = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"SLURM run failed ({proc.returncode}):\n{out[-6000:]}"
    print(f"tiny config through SLURM: {seconds:.0f} s")
    return work, out, seconds


def test_every_non_local_job_ran_as_a_slurm_job(slurm_run, slurm_cluster):
    work, out, _ = slurm_run
    jobs = parse_jobs(out)
    assert {j["rule"] for j in jobs if j["local"]} == LOCAL_RULES - OPTIONAL_RULES
    # the tiny config has no best-of-N strategy; the GGUF conversion is a (GPU-less) SLURM job
    assert {j["rule"] for j in jobs if not j["local"]} == (GPU_RULES | LIGHT_RULES) - OPTIONAL_RULES
    expected = sorted(slurm_comment(j) for j in jobs if not j["local"])
    records = slurm_jobs(work)
    assert sorted(r["Comment"] for r in records.values()) == expected
    assert {r["JobState"] for r in records.values()} == {"COMPLETED"}
    assert (work / "results/tables/summary.csv").is_file()
    assert (work / "results/toxicity/metrics/tiny-gpt2__smollm2-135m/naive/seed0.toxicity.parquet").is_file()
    assert (work / "results/safety/student/tfidf__small-bert/naive/seed0/predictions.parquet").is_file()
    # the job completion log (jobcomp/filetxt) agrees
    jobcomp = job_completions(slurm_cluster)
    assert all(
        (jobcomp[i]["JobState"], jobcomp[i]["Partition"]) == ("COMPLETED", r["Partition"])
        for i, r in records.items()
    )
    # what the jobs asked for (as in the dry runs; last, so that a wrong request does not hide the above)
    check_requests(jobs, layered_config(work / "config.yaml", work / "slurm-test.yaml"))


def test_gpu_jobs_asked_slurm_for_a_gpu_on_the_gpu_partition(slurm_run):
    work, out, _ = slurm_run
    by_comment = {r["Comment"]: r for r in slurm_jobs(work).values()}
    for job in parse_jobs(out):
        if job["local"]:
            continue
        rec = by_comment[slurm_comment(job)]
        res = job["resources"]
        if res.get("gpu", "0") == "1":
            assert (rec["Partition"], rec.get("TresPerJob"), rec.get("JOB_GRES")) == (
                "gpu",
                "gres:gpu:1",
                "gpu:1",
            )
            assert rec["CpusPerTres"] == f"gres:gpu:{res['cpus_per_gpu']}"
        else:
            assert rec["Partition"] == "cpu" and "gpu" not in rec.get("TresPerJob", "") + rec.get(
                "JOB_GRES", ""
            )
        assert rec["MinMemoryNode"] == f"{res['mem_mb']}M"
        assert rec["TimeLimit"] == time_limit(int(res["runtime"])), (job, rec["TimeLimit"])


def test_second_invocation_has_nothing_to_do(slurm_run):
    work, _, _ = slurm_run
    before = set(slurm_jobs(work))
    proc = run_slurm(work, "--configfile", "slurm-test.yaml", limit=60)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr
    # requests are scheduling only: the default (larger) ones rerun nothing either
    proc = run_slurm(work, limit=60)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr
    assert set(slurm_jobs(work)) == before


def test_failed_job_is_reported_and_retried_with_more_memory(slurm_run, slurm_cluster):
    work, _, _ = slurm_run
    proc = run_slurm(work, "--snakefile", "tests/slurm/flaky.smk", limit=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert (
        "Error in rule flaky" in out and "SLURM status is: 'FAILED'" in out and "Trying to restart job" in out
    )
    flaky = sorted(
        (r for r in slurm_jobs(work).values() if r["Comment"] == "rule_flaky"), key=lambda r: int(r["JobId"])
    )
    assert [(r["JobState"], r["MinMemoryNode"]) for r in flaky] == [("FAILED", "200M"), ("COMPLETED", "400M")]
    jobcomp = job_completions(slurm_cluster)
    assert [jobcomp[r["JobId"]]["JobState"] for r in flaky] == ["FAILED", "COMPLETED"]


def test_api_jobs_run_one_at_a_time_on_slurm(slurm_cluster, tmp_path):
    """The perspective_api limit holds for SLURM jobs: the controller submits the next job that queries the
    API only when the last one has ended (tests/test_api_scorers.py: the same locally)."""
    work = profile_copy(tmp_path / "api", "tests/configs/tiny.yaml")
    with FakePerspective(score=0.2) as api:
        targets = three_runs(work, api.url)
        proc = run_slurm(
            work,
            *targets,
            "--set-threads",
            "score_generations=1",
            "--set-resources",
            "score_generations:mem_mb=300",
            "--allowed-rules",
            "score_generations",
            limit=400,
            PERSPECTIVE_API_KEY="test-key",
        )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    records = slurm_jobs(work)
    assert len(records) == 3 and {r["JobState"] for r in records.values()} == {"COMPLETED"}
    assert len(api.requests) == 3 * TEXTS
    windows = job_windows(api)
    assert all(end < start for (_, end), (start, _) in zip(windows, windows[1:])), windows
