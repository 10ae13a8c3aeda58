"""Formatting by standard tools, configured in pyproject.toml: snakefmt for the rule files, ruff format and
ruff check for the Python code. File sizes are guidance in docs/pipeline.md, not a test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

SNAKEFMT = shutil.which("snakefmt", path=str(Path(sys.executable).parent))
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent))
PYTHON = ["src", "tests", "benchmarks", "workflow/scripts"]


@pytest.mark.skipif(SNAKEFMT is None, reason="snakefmt is installed by `make test` (the test extra)")
def test_rule_files_are_snakefmt_clean():
    proc = subprocess.run(
        [SNAKEFMT, "--check", "Snakefile", "workflow/rules"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(RUFF is None, reason="ruff is installed by `make test` (the test extra)")
def test_python_is_ruff_formatted():
    proc = subprocess.run([RUFF, "format", "--check", *PYTHON], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(RUFF is None, reason="ruff is installed by `make test` (the test extra)")
def test_python_passes_ruff_check():
    proc = subprocess.run([RUFF, "check", *PYTHON], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
