"""Shared fixtures: a temporary copy of the repository and one finished tiny pipeline run in it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import FakePerspective

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
SHIMS = Path(__file__).resolve().parent / "bin"  # see bin/scontrol
COPIED = ["Snakefile", "config.yaml", "workflow", "envs", "resources", "src", "tests/configs"]


def copy_repo(dest: Path) -> Path:
    """The workflow files (not results, venv or git) in `dest`, with the tiny config as config.yaml.

    The package is imported from the installed checkout; `src/` is copied because rules list its
    files as inputs, so editing the copy's modules drives the rerun-scope tests."""
    for name in COPIED:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / name)
    shutil.copy2(REPO / "tests/configs/tiny.yaml", dest / "config.yaml")
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 900,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{SHIMS}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    proc = subprocess.run([SNAKEMAKE, *args], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def executed_rules(proc: subprocess.CompletedProcess) -> list[str]:
    """The rule of every job a (real) snakemake run executed, from its `rule X:` / `localrule X:` lines."""
    return re.findall(r"^\s*(?:local)?rule (\w+):", proc.stdout + proc.stderr, flags=re.M)


def pending_jobs(workdir: Path, *args: str) -> dict[str, list[str]]:
    """Rule name -> reasons of every job a dry run would execute."""
    out = snakemake(workdir, "-n", *args).stdout
    jobs: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if m:
            reason = re.search(r"reason: (.*)", block)
            jobs.setdefault(m.group(1), []).append(reason.group(1) if reason else "")
    return jobs


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A repository copy in which the tiny config has run to completion."""
    work = copy_repo(tmp_path_factory.mktemp("tiny"))
    snakemake(work, "--cores", "2")
    return work


@pytest.fixture
def workflow_copy(tmp_path) -> Path:
    """A fresh repository copy with nothing run (for failure cases)."""
    return copy_repo(tmp_path)


@pytest.fixture
def fake_perspective():
    """URL of a local stand-in for the Perspective API that scores every text 0.3."""
    with FakePerspective(score=0.3) as api:
        yield api.url
