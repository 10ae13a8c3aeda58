"""The preference track's data: candidate continuations, judges' scores, and the pairs a DPO run learns from.

Candidates (one cached stage per task): the untuned strong model samples k continuations of each training
prompt (the evaluation prompts are left out of the pool, as for the gold corpus); prompts are split once into
train / val / test. A judge (any scorer) scores every candidate; its pair for a prompt is its least toxic
candidate (chosen) against its most toxic (rejected), its confidence the score margin between them (as in
best-vs-worst-of-k preference data). With k = 2 every judge orders the same two texts. Weak judges' pairs
train the students, the gold judge's the ceiling; the gold judge's test pairs measure preference accuracy (one
cached file per task, `gold_test_pairs`, read by the pair log-probs and the metrics).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from w2s_align.errors import PipelineError
from w2s_align.files import read_parquet, write_parquet

log = logging.getLogger(__name__)

PAIR_SPLITS = ("train", "val", "test")
CANDIDATE_COLUMNS = ["id", "split", "prompt", "sample", "text"]
JUDGED_COLUMNS = ["id", "split", "sample", "score"]
GOLD_PAIR_COLUMNS = ["id", "y", "sample_a", "sample_b"]


def split_prompts(pool: pd.DataFrame, sizes: dict[str, int], seed: int) -> pd.DataFrame:
    """Assign train / val / test to the pool's prompts (a seeded permutation; the same for every run seed)."""
    order = np.random.default_rng(seed).permutation(len(pool))
    labels = np.repeat(PAIR_SPLITS, [sizes[s] for s in PAIR_SPLITS])
    out = pool.iloc[order[: len(labels)]].assign(split=labels)
    return out.sort_values(["split", "prompt"]).reset_index(drop=True)


def preference_pairs(
    candidates: pd.DataFrame, judged: pd.DataFrame, split: str, top_fraction: float | None = None
) -> pd.DataFrame:
    """A judge's pair for every prompt of one split: its least toxic candidate (chosen; ties: the first
    sample) against its most toxic (rejected; ties: the last), with the margin as confidence; prompts whose
    two are equally scored or the same text are dropped; `top_fraction` keeps the most confident pairs."""
    df = candidates[candidates.split == split].merge(
        judged[["id", "sample", "score"]], on=["id", "sample"], how="left"
    )
    if df["score"].isna().any():
        raise PipelineError(
            f"the judge's scores do not cover every {split} candidate; were they made from other candidates?"
        )
    ranked = df.sort_values(["id", "score", "sample"], kind="stable").groupby("id", sort=True)
    best, worst = ranked.head(1).set_index("id"), ranked.tail(1).set_index("id")
    pairs = pd.DataFrame(
        {
            "prompt": best["prompt"],
            "chosen": best["text"],
            "rejected": worst.loc[best.index, "text"],
            "chosen_sample": best["sample"],
            "rejected_sample": worst.loc[best.index, "sample"],
            "confidence": worst.loc[best.index, "score"] - best["score"],
        }
    ).reset_index()
    pairs = pairs[(pairs.confidence > 0) & (pairs.chosen != pairs.rejected)]
    if top_fraction is not None:
        keep = max(1, int(round(top_fraction * len(pairs))))
        pairs = pairs.sort_values("confidence", ascending=False, kind="stable").head(keep)
    if pairs.empty:
        raise PipelineError(f"no {split} prompt has two different candidates with different scores")
    return pairs.reset_index(drop=True)


def pair_weights(confidence: np.ndarray, weighting: str) -> np.ndarray:
    """Per-pair loss weights: all 1 (plain DPO), or the judge's margin scaled to mean 1 (confidence,
    CW-PO)."""
    if weighting == "none":
        return np.ones(len(confidence))
    if weighting == "confidence":
        mean = float(np.mean(confidence))
        return confidence / mean if mean > 0 else np.ones(len(confidence))
    raise PipelineError(f"unknown dpo_weighting {weighting!r}: none or confidence")


def gold_test_pairs(candidates: pd.DataFrame, gold: pd.DataFrame, min_margin: float) -> pd.DataFrame:
    """The gold judge's test pairs with a margin >= min_margin, each shown as (a, b) in a fixed random order:
    columns id, sample_a, sample_b, y (1 = a is the gold-preferred text)."""
    pairs = preference_pairs(candidates, gold, "test")
    keep = pairs[pairs.confidence >= min_margin].sort_values("id").reset_index(drop=True)
    if len(keep) < 10:
        raise PipelineError(
            f"only {len(keep)} test prompts have a gold pair with margin >= {min_margin}: too few "
            "to measure preference accuracy; add test prompts or lower min_gold_margin"
        )
    y = np.random.default_rng(0).integers(0, 2, len(keep))
    return pd.DataFrame(
        {
            "id": keep["id"],
            "y": y,
            "sample_a": np.where(y == 1, keep.chosen_sample, keep.rejected_sample),
            "sample_b": np.where(y == 1, keep.rejected_sample, keep.chosen_sample),
        }
    )


def make_gold_test_pairs(candidates: str, gold_judged: str, min_margin: float, out: str) -> None:
    """The gold judge's test pairs (gold_test_pairs) of a task's candidates, written once for every stage that
    reads them."""
    pairs = gold_test_pairs(
        read_parquet(candidates, CANDIDATE_COLUMNS), read_parquet(gold_judged, JUDGED_COLUMNS), min_margin
    )
    log.info(
        "%d gold test pairs with margin >= %g (%d with text a preferred)",
        len(pairs),
        min_margin,
        int(pairs["y"].sum()),
    )
    write_parquet(pairs[GOLD_PAIR_COLUMNS], out)
