"""The SLURM profile (`snakemake --profile slurm`): resources per job in dry runs (no SLURM needed),
then the tiny config on a real one-node SLURM cluster started by tests/slurm/start_slurm.sh."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SNAKEMAKE, copy_repo, snakemake

GPU_RULES = {"train_weak", "weak_labels", "train_ceiling", "train_student"}
LOCAL_RULES = {"split_data", "metrics", "summary", "plots", "all"}
PROFILE_ENV = ("W2S_SLURM_ACCOUNT", "W2S_SLURM_GPU_MODEL", "W2S_SLURM_GPU_CONSTRAINT", "W2S_SLURM_GRES",
               "SNAKEMAKE_SLURM_PARTITIONS")


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
        jobs.append({
            "rule": m.group(2),
            "local": bool(m.group(1)),
            "wildcards": dict(kv.split("=", 1) for kv in fields.get("wildcards", "").split(", ") if kv),
            "resources": dict(kv.split("=", 1) for kv in fields.get("resources", "").split(", ") if kv),
        })
    return jobs


def model_resources(*configs: Path) -> dict[str, dict]:
    """The `resources` of every model after layering `configs`, with the schema defaults."""
    models: dict[str, dict] = {}
    for path in configs:
        for name, spec in (yaml.safe_load(path.read_text()).get("models") or {}).items():
            models.setdefault(name, {}).update(spec.get("resources", {}))
    return {name: {"mem_mb": 8000, "runtime": 60, **res} for name, res in models.items()}


def check_requests(jobs: list[dict], models: dict[str, dict]) -> None:
    """GPU on the jobs of the training rules unless the model is TF-IDF; memory and time from the registry."""
    for job in jobs:
        res, wc = job["resources"], job["wildcards"]
        if job["rule"] not in GPU_RULES:
            assert job["rule"] in LOCAL_RULES and "gpu" not in res, job
            continue
        model = wc["strong"] if job["rule"] in ("train_ceiling", "train_student") else wc["weak"]
        assert res["gpu"] == ("0" if model == "tfidf" else "1"), job
        assert "cpus_per_gpu" in res, job
        share = 0.5 if job["rule"] == "weak_labels" else 1
        assert int(res["mem_mb"]) == models[model]["mem_mb"], job
        assert int(res["runtime"]) == round(models[model]["runtime"] * share), job


@pytest.fixture
def clean_env(monkeypatch):
    for name in PROFILE_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def default_copy(tmp_path_factory) -> Path:
    return profile_copy(tmp_path_factory.mktemp("profile"))


# ---------------------------------------------------------------- dry runs: no SLURM needed


def test_no_default_profile_that_leaks_into_slurm_runs():
    assert (REPO / "slurm/config.yaml").is_file()
    assert not any((REPO / d / "default").exists() for d in ("profiles", "workflow/profiles"))


def test_default_config_asks_for_gpus_on_training_jobs_only(default_copy, clean_env):
    proc = snakemake(default_copy, "--profile", "slurm", "-n")
    assert "Using profile slurm" in proc.stdout + proc.stderr
    jobs = parse_jobs(proc.stdout)
    assert {j["rule"] for j in jobs} == GPU_RULES | LOCAL_RULES
    check_requests(jobs, model_resources(default_copy / "config.yaml"))


def test_tiny_config_tfidf_jobs_ask_for_no_gpu(default_copy, clean_env):
    jobs = parse_jobs(snakemake(default_copy, "--profile", "slurm", "-n", "--configfile",
                                "tests/configs/tiny.yaml").stdout)
    check_requests(jobs, model_resources(default_copy / "config.yaml", default_copy / "tests/configs/tiny.yaml"))
    assert {j["resources"]["gpu"] for j in jobs if j["rule"] in GPU_RULES} == {"0", "1"}


def test_paper_config_builds_its_dag_quickly(default_copy, clean_env):
    start = time.perf_counter()
    proc = snakemake(default_copy, "--profile", "slurm", "-n", "--configfile", "configs/paper.yaml")
    seconds = time.perf_counter() - start
    jobs = parse_jobs(proc.stdout)
    print(f"paper DAG: {len(jobs)} jobs, dry run {seconds:.1f} s")
    assert seconds < 10
    counts = {rule: sum(j["rule"] == rule for j in jobs) for rule in GPU_RULES | LOCAL_RULES}
    # 2 tasks x 5 seeds; 6 strong models; 3 strategies
    assert counts == {"split_data": 10, "train_weak": 10, "weak_labels": 10, "train_ceiling": 60,
                      "train_student": 180, "metrics": 180, "summary": 1, "plots": 1, "all": 1}
    models = model_resources(default_copy / "config.yaml", default_copy / "configs/paper.yaml")
    check_requests(jobs, models)
    assert models["qwen2.5-7b"]["mem_mb"] > models["gpt2-medium"]["mem_mb"]


def test_cluster_values_come_from_the_environment(default_copy, clean_env):
    clean_env.setenv("W2S_SLURM_ACCOUNT", "12345")
    clean_env.setenv("W2S_SLURM_GPU_MODEL", "a100")
    clean_env.setenv("W2S_SLURM_GPU_CONSTRAINT", "a100|h100")
    jobs = parse_jobs(snakemake(default_copy, "--profile", "slurm", "-n").stdout)
    for job in jobs:
        res = job["resources"]
        assert res["slurm_account"] == "12345"
        gpu_rule = job["rule"] in GPU_RULES
        assert (res.get("gpu_model"), res.get("constraint")) == (("a100", "a100|h100") if gpu_rule else (None, None))
    clean_env.setenv("W2S_SLURM_GRES", "1")  # gres-only clusters: --gres instead of --gpus
    for job in parse_jobs(snakemake(default_copy, "--profile", "slurm", "-n").stdout):
        if job["rule"] in GPU_RULES:
            assert job["resources"]["gpu"] == "0" and job["resources"]["gres"] == "gpu:a100:1", job


# ---------------------------------------------------------------- a real one-node SLURM cluster

SLURM_FLAGS = [  # test cluster without accounting (no sacct): poll squeue, shortly after each job
    "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "8"]
SMALL_REQUESTS = """# the test cluster's node has 4000 MB
models:
  tfidf: {resources: {mem_mb: 300, runtime: 10}}
  tiny-gpt2: {resources: {mem_mb: 400, runtime: 10}}
  small-bert: {resources: {mem_mb: 500, runtime: 20}}
"""


def run_slurm(workdir: Path, *args: str, limit: int = 240) -> subprocess.CompletedProcess:
    """`snakemake --profile slurm` with the test cluster's flags; interrupted (SIGINT) after `limit` s.

    Jobs import the copy's own package (PYTHONPATH), i.e. the code under test."""
    env = {**{k: v for k, v in os.environ.items() if k not in PROFILE_ENV}, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(workdir / "src")}
    cmd = ["timeout", "-s", "INT", "-k", "15", str(limit), SNAKEMAKE, "--profile", "slurm", *SLURM_FLAGS, *args]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)


def slurm_jobs(workdir: Path) -> dict[str, dict]:
    """SLURM's record (`scontrol -d show job`) of every job that ran in `workdir`, by job id."""
    out = subprocess.run(["scontrol", "-d", "-o", "show", "job"], capture_output=True, text=True,
                         check=True).stdout
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
    start = subprocess.run(["bash", str(REPO / "tests/slurm/start_slurm.sh"), str(state)], capture_output=True,
                           text=True, timeout=600)
    if start.returncode == 3:  # nothing was started
        pytest.skip(f"cannot start a test SLURM cluster here: {start.stderr.strip()}")
    try:
        assert start.returncode == 0, f"start_slurm.sh failed:\n{start.stdout}\n{start.stderr}"
        yield state
    finally:
        subprocess.run(["bash", str(REPO / "tests/slurm/stop_slurm.sh"), str(state)], timeout=120)


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    """The tiny config run to completion through SLURM: (workdir, controller output, seconds)."""
    work = profile_copy(tmp_path_factory.mktemp("slurm-run"), "tests/configs/tiny.yaml")
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
    assert {j["rule"] for j in jobs if j["local"]} == LOCAL_RULES
    expected = sorted(f"rule_{j['rule']}_wildcards_{'_'.join(j['wildcards'].values())}"
                      for j in jobs if not j["local"])
    records = slurm_jobs(work)
    assert sorted(r["Comment"] for r in records.values()) == expected
    assert {r["JobState"] for r in records.values()} == {"COMPLETED"}
    assert (work / "results/tables/summary.csv").is_file()
    # the job completion log (jobcomp/filetxt) agrees
    jobcomp = job_completions(slurm_cluster)
    assert all((jobcomp[i]["JobState"], jobcomp[i]["Partition"]) == ("COMPLETED", r["Partition"])
               for i, r in records.items())


def test_gpu_jobs_asked_slurm_for_a_gpu_on_the_gpu_partition(slurm_run):
    work, out, _ = slurm_run
    by_comment = {r["Comment"]: r for r in slurm_jobs(work).values()}
    for job in parse_jobs(out):
        if job["local"]:
            continue
        rec = by_comment[f"rule_{job['rule']}_wildcards_{'_'.join(job['wildcards'].values())}"]
        res = job["resources"]
        if res["gpu"] == "1":
            assert (rec["Partition"], rec.get("TresPerJob"), rec.get("JOB_GRES")) == ("gpu", "gres:gpu:1", "gpu:1")
            assert rec["CpusPerTres"] == f"gres:gpu:{res['cpus_per_gpu']}"
        else:
            assert rec["Partition"] == "cpu" and "gpu" not in rec.get("TresPerJob", "") + rec.get("JOB_GRES", "")
        assert rec["MinMemoryNode"] == f"{res['mem_mb']}M"
        assert rec["TimeLimit"] == f"00:{int(res['runtime']):02d}:00"


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
    assert "Error in rule flaky" in out and "SLURM status is: 'FAILED'" in out and "Trying to restart job" in out
    flaky = sorted((r for r in slurm_jobs(work).values() if r["Comment"] == "rule_flaky"),
                   key=lambda r: int(r["JobId"]))
    assert [(r["JobState"], r["MinMemoryNode"]) for r in flaky] == [("FAILED", "200M"), ("COMPLETED", "400M")]
    jobcomp = job_completions(slurm_cluster)
    assert [jobcomp[r["JobId"]]["JobState"] for r in flaky] == ["FAILED", "COMPLETED"]
