"""The layout stays what the redesign promised: formatted rule files, short files, one concern each."""

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


@pytest.mark.parametrize("pattern, limit", [("Snakefile", 60), ("workflow/rules/*.smk", 150),
                                            ("src/w2s_align/**/*.py", 250), ("benchmarks/*.py", 300)])
def test_files_stay_short(pattern, limit):
    long = {str(p.relative_to(REPO)): n for p in REPO.glob(pattern)
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > limit}
    assert not long, f"over {limit} lines: {long}"
