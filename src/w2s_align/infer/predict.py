"""Predictions stage: a trained strong classifier (ceiling or student) predicts val and test.

Its own rule and module, reading the saved checkpoint: editing this stage reruns predictions and metrics,
never training or weak labels."""

from __future__ import annotations

from w2s_align.files import write_parquet
from w2s_align.models.checkpoint import labelled_rows


def write_predictions(
    model_file: str,
    meta_file: str,
    split_files: dict[str, str],
    out: str,
    model_name: str,
    threads: int,
    local_dir: str | None = None,
) -> None:
    """One parquet of row columns + pred_p1, pred_hard, pred_model, pred_config_hash."""
    rows = labelled_rows(model_file, meta_file, split_files, "pred", model_name, threads, local_dir)
    write_parquet(rows, out)
