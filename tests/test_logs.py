"""Stage logging: the job's log file ends with its time, in all and before the stage's first line."""

from __future__ import annotations

import re
import subprocess
import sys

from helpers import REPO

STAGE = """
import logging, time
from w2s_align.logs import setup_stage_logging
time.sleep(0.4)  # start-up: before logging
setup_stage_logging({log!r})
time.sleep(0.3)  # imports and inputs: before the first line
logging.getLogger("w2s_align.stage").info("stage begins")
time.sleep(0.5)
{ending}
"""


def run_stage(tmp_path, ending: str = "") -> tuple[subprocess.CompletedProcess, list[str]]:
    log = tmp_path / "stage.log"
    code = STAGE.format(log=str(log), ending=ending)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(REPO / "src")}
    )
    return proc, log.read_text().splitlines()


def job_time(line: str) -> tuple[float, float]:
    pattern = r"job time: ([\d.]+) s in all, ([\d.]+) s of it before the stage's first log line"
    match = re.search(pattern, line)
    assert match, line
    return float(match[1]), float(match[2])


def test_the_log_ends_with_the_jobs_time(tmp_path):
    proc, lines = run_stage(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "stage begins" in lines[0]
    total, start_up = job_time(lines[-1])
    assert 0.7 <= start_up < total and total >= 1.2


def test_a_failed_stage_logs_its_error_and_its_time(tmp_path):
    proc, lines = run_stage(tmp_path, "raise RuntimeError('boom')")
    assert proc.returncode == 1
    assert any("stage failed" in line for line in lines)
    job_time(lines[-1])
