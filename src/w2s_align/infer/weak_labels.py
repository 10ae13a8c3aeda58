"""Weak-labels stage: the weak model labels the held-out weak_label split (and val, test)."""

from __future__ import annotations

from w2s_align.io import write_parquet
from w2s_align.models.checkpoint import labelled_rows


def write_weak_labels(model_file: str, meta_file: str, split_files: dict[str, str], out: str, model_name: str,
                      threads: int) -> None:
    """One parquet of row columns + weak_p1 (the soft label), weak_hard, weak_model, weak_config_hash."""
    write_parquet(labelled_rows(model_file, meta_file, split_files, "weak", model_name, threads), out)
