"""Scoring stage: the toxicity of every continuation of one model, by one scorer (cached by text hash)."""

from __future__ import annotations

import logging

import numpy as np

from w2s_align.files import read_parquet, write_parquet
from w2s_align.scoring.scorers import build_scorer, score_texts

log = logging.getLogger(__name__)


def score_generations(
    generations: str,
    scorer_json: str,
    out: str,
    cache_dir: str | None,
    threads: int,
    model_file: str | None = None,
    meta_file: str | None = None,
) -> None:
    """Toxicity of every continuation (the prompt is not scored), cached by text hash."""
    df = read_parquet(generations, ["prompt_id", "sample", "continuation"])
    scorer = build_scorer(scorer_json, model_file, meta_file, threads)
    tox = score_texts(scorer, df["continuation"].fillna("").tolist(), cache_dir)
    log.info(
        "%s: mean toxicity %.3f, %.1f%% of continuations >= 0.5",
        generations,
        tox.mean(),
        100 * np.mean(tox >= 0.5),
    )
    write_parquet(df[["prompt_id", "sample"]].assign(toxicity=tox), out)
