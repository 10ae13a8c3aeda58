"""Fault tolerance: a killed job leaves nothing that looks finished and a rerun gives the same tables;
a truncated artifact stops its consumer with an error naming the file."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import CORES, SHIMS, SNAKEMAKE, copy_repo, executed_rules, snakemake

METRICS = "results/safety/metrics/tiny-gpt2__small-bert/naive/seed0.parquet"
CEILING = Path("results/safety/ceiling/small-bert/seed0")


@pytest.fixture
def finished_copy(tiny_run, tmp_path) -> Path:
    """A fresh repository copy holding the finished tiny run's safety results and Snakemake's records."""
    work = copy_repo(tmp_path)
    for name in ("results/safety", ".snakemake"):
        shutil.copytree(tiny_run / name, work / name, symlinks=True)
    return work


def slow_ceiling(work: Path, epochs: int) -> None:
    """More epochs for the ceiling only (the students keep theirs, so they stay up to date)."""
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    model = cfg["models"]["small-bert"]
    model["student"] = {**model.get("student", {}), "epochs": model["train"]["epochs"]}
    model["train"]["epochs"] = epochs
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def kill_during_second_epoch(work: Path, target: str) -> None:
    """Start the run and SIGKILL Snakemake and its jobs once the ceiling has finished its first epoch."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PATH": f"{SHIMS}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(work / "src"),
    }
    proc = subprocess.Popen(
        [SNAKEMAKE, "--cores", CORES, target],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    log = work / "logs/safety/ceiling/small-bert/seed0/train.log"
    deadline = time.monotonic() + 600
    try:
        while "epoch 1/" not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None, "the run ended before the ceiling trained"
            assert time.monotonic() < deadline, "the ceiling never finished an epoch"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_kill_9_mid_epoch_leaves_nothing_finished_and_rerun_matches(finished_copy):
    slow_ceiling(finished_copy, epochs=40)  # ~3 s of training: the kill lands well before the end
    plan = snakemake(finished_copy, "-n", METRICS).stdout
    assert "train_ceiling" in plan and "train_student" not in plan and "train_weak" not in plan
    kill_during_second_epoch(finished_copy, METRICS)
    declared = ["classifier.safetensors", "classifier.json"]
    assert not any((finished_copy / CEILING / name).exists() for name in declared)
    snakemake(finished_copy, "--unlock")  # the killed controller left its lock, as after a power loss
    snakemake(finished_copy, "--cores", CORES, METRICS)  # Snakemake notices and reruns the killed job
    resumed = pd.read_parquet(finished_copy / METRICS)
    proc = snakemake(finished_copy, "--cores", CORES, METRICS, "--forcerun", "train_ceiling")  # uninterrupted
    assert sorted(executed_rules(proc)) == ["metrics", "predict", "train_ceiling"]
    pd.testing.assert_frame_equal(resumed, pd.read_parquet(finished_copy / METRICS))


def test_truncated_weak_labels_stop_the_student_with_the_file_named(finished_copy):
    labels = finished_copy / "results/safety/weak/tiny-gpt2/seed0/weak_labels.parquet"
    data = labels.read_bytes()
    labels.write_bytes(data[: len(data) // 2])
    student = "results/safety/student/tiny-gpt2__small-bert/naive/seed0/classifier.safetensors"
    proc = snakemake(finished_copy, "--cores", CORES, student, check=False)
    assert proc.returncode != 0
    log = (finished_copy / "logs/safety/student/tiny-gpt2__small-bert/naive/seed0/train.log").read_text()
    assert f"cannot read parquet artifact {labels.relative_to(finished_copy)}" in log
    assert not (finished_copy / student).exists()
    assert not list((finished_copy / student).parent.glob("*.json"))
