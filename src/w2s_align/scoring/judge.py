"""Judging stage of the preference track: one judge (any scorer) scores every candidate continuation."""

from __future__ import annotations

import logging

from w2s_align.data.preferences import CANDIDATE_COLUMNS
from w2s_align.files import read_parquet, write_parquet
from w2s_align.scoring.scorers import build_scorer, score_texts

log = logging.getLogger(__name__)


def judge_candidates(
    candidates: str,
    judge_json: str,
    out: str,
    threads: int,
    cache_dir: str | None = None,
    model_file: str | None = None,
    meta_file: str | None = None,
) -> None:
    """One judge's toxicity score of every candidate (cached by text hash like every scorer)."""
    cands = read_parquet(candidates, CANDIDATE_COLUMNS)
    judge = build_scorer(judge_json, model_file, meta_file, threads)
    judged = cands[["id", "split", "sample"]].assign(
        score=score_texts(judge, cands["text"].tolist(), cache_dir)
    )
    margin = judged.groupby("id")["score"].agg(lambda x: x.max() - x.min())
    log.info(
        "judge: mean toxicity %.3f; best-vs-worst margin per prompt: median %.3f, >= 0.2 for %.1f%% of "
        "prompts",
        float(judged["score"].mean()),
        float(margin.median()),
        100 * float((margin >= 0.2).mean()),
    )
    write_parquet(judged, out)
