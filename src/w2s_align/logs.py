"""Stage logging: every job logs to its rule's log file and stderr, uncaught errors included."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import time
from pathlib import Path

from w2s_align.errors import PipelineError

log = logging.getLogger("w2s_align")


def setup_stage_logging(log_file: str | os.PathLike | None) -> None:
    """Log to the rule's log file and stderr; uncaught errors land in the log too."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w", encoding="utf-8"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    def excepthook(exc_type, exc, tb):
        if issubclass(exc_type, PipelineError):
            log.error("%s", exc)
        else:
            log.error("stage failed", exc_info=(exc_type, exc, tb))

    sys.excepthook = excepthook
    _log_job_time_at_exit()


def process_age() -> float | None:
    """Seconds since this process started (Linux /proc), or None where unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time, ticks since boot
        return float(Path("/proc/uptime").read_text().split()[0]) - started
    return None


class _FirstRecord(logging.Filter):
    """Notes when the stage logs its first line (after its imports and set-up)."""

    at: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self.at is None:
            self.at = time.monotonic()
        return True


def _log_job_time_at_exit() -> None:
    """At exit, one line with the job's time: in all, and before the stage's first log line (start-up:
    interpreter, Snakemake's script preamble, imports, reading inputs and models)."""
    age = process_age()
    if age is None:
        return
    began, first = time.monotonic() - age, _FirstRecord()
    logging.getLogger().handlers[-1].addFilter(first)

    def report():
        now = time.monotonic()
        start_up = (first.at or now) - began
        log.info(
            "job time: %.1f s in all, %.1f s of it before the stage's first log line", now - began, start_up
        )

    atexit.register(report)
