"""Formatting by standard tools: snakefmt for the rule files (ruff for Python: test_lint.py). File sizes are guidance
in docs/pipeline.md, not a test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

SNAKEFMT = shutil.which("snakefmt", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(SNAKEFMT is None, reason="snakefmt is installed by `make test` (the test extra)")
def test_rule_files_are_snakefmt_clean():
    proc = subprocess.run([SNAKEFMT, "--check", "Snakefile", "workflow/rules"], cwd=REPO, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
