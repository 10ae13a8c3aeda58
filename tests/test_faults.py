"""Fault tolerance: a killed job leaves nothing that looks finished and a rerun gives the same tables;
a truncated artifact stops its consumer with an error naming the file."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import yaml

from conftest import SHIMS, SNAKEMAKE, snakemake

METRICS = "results/safety/metrics/tiny-gpt2__small-bert/naive/seed0.parquet"
CEILING = Path("results/safety/ceiling/small-bert/seed0")


def slow_strong_model(work: Path, epochs: int) -> None:
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["models"]["small-bert"]["train"]["epochs"] = epochs
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def kill_during_second_epoch(work: Path, target: str) -> None:
    """Start the run and SIGKILL Snakemake and its jobs once the ceiling has finished its first epoch."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{SHIMS}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([SNAKEMAKE, "--cores", "2", target], cwd=work, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    log = work / "logs/safety/ceiling/small-bert/seed0/train.log"
    deadline = time.monotonic() + 600
    try:
        while "epoch 1/" not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None, "the run ended before the ceiling trained"
            assert time.monotonic() < deadline, "the ceiling never finished an epoch"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_kill_9_mid_epoch_leaves_nothing_finished_and_rerun_matches(workflow_copy):
    slow_strong_model(workflow_copy, epochs=12)
    kill_during_second_epoch(workflow_copy, METRICS)
    declared = ["model.safetensors", "model.json", "predictions.parquet"]
    assert not any((workflow_copy / CEILING / name).exists() for name in declared)
    snakemake(workflow_copy, "--unlock")  # the killed controller left its lock, as after a power loss
    snakemake(workflow_copy, "--cores", "2", METRICS)  # Snakemake notices and reruns the killed job
    resumed = pd.read_parquet(workflow_copy / METRICS)
    snakemake(workflow_copy, "--cores", "2", "--forcerun", "train_ceiling", METRICS)  # uninterrupted
    pd.testing.assert_frame_equal(resumed, pd.read_parquet(workflow_copy / METRICS))


def test_truncated_weak_labels_stop_the_student_with_the_file_named(workflow_copy):
    labels = workflow_copy / "results/safety/weak/tiny-gpt2/seed0/weak_labels.parquet"
    snakemake(workflow_copy, "--cores", "2", str(labels.relative_to(workflow_copy)))
    data = labels.read_bytes()
    labels.write_bytes(data[: len(data) // 2])
    student = "results/safety/student/tiny-gpt2__small-bert/naive/seed0/model.safetensors"
    proc = snakemake(workflow_copy, "--cores", "2", student, check=False)
    assert proc.returncode != 0
    log = (workflow_copy / "logs/safety/student/tiny-gpt2__small-bert/naive/seed0/train.log").read_text()
    assert f"cannot read parquet artifact {labels.relative_to(workflow_copy)}" in log
    assert not (workflow_copy / student).exists()
    assert not list((workflow_copy / student).parent.glob("*.parquet"))
