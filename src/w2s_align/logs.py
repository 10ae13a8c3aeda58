"""Stage logging: every job logs to its rule's log file and stderr, uncaught errors included."""

from __future__ import annotations

import logging
import os
import sys
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
