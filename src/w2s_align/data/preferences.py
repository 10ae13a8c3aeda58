"""The preference track's data: candidate continuations, judges' scores, and the pairs a DPO run learns from.

Candidates (one cached stage per task): the untuned strong model samples k continuations of each training
prompt (the evaluation prompts are left out of the pool, as for the gold corpus); prompts are split once into
train / val / test. A judge (any scorer) scores every candidate; its pair for a prompt is its least toxic
candidate (chosen) against its most toxic (rejected), its confidence the score margin between them (as in
best-vs-worst-of-k preference data). With k = 2 every judge orders the same two texts. Weak judges' pairs train
the students, the gold judge's the ceiling; the gold judge's test pairs measure preference accuracy.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pandas as pd

from w2s_align.data.gold import prompt_pool
from w2s_align.io import PipelineError, read_parquet, short_hash, write_parquet
from w2s_align.specs import CorpusSpec, Decoding, GoldSpec, ModelSpec

log = logging.getLogger(__name__)

PAIR_SPLITS = ("train", "val", "test")
CANDIDATE_COLUMNS = ["id", "split", "prompt", "sample", "text"]
JUDGED_COLUMNS = ["id", "split", "sample", "score"]


def split_prompts(pool: pd.DataFrame, sizes: dict[str, int], seed: int) -> pd.DataFrame:
    """Assign train / val / test to the pool's prompts (a seeded permutation; the same for every run seed)."""
    order = np.random.default_rng(seed).permutation(len(pool))
    labels = np.repeat(PAIR_SPLITS, [sizes[s] for s in PAIR_SPLITS])
    out = pool.iloc[order[:len(labels)]].assign(split=labels)
    return out.sort_values(["split", "prompt"]).reset_index(drop=True)


def make_candidates(corpus_json: str, settings_json: str, prompts_path: str, generator_json: str,
                    local_dir: str | None, decoding_json: str, out: str, threads: int) -> None:
    """k sampled continuations of every train/val/test prompt by the untuned generator, one row per candidate
    (`settings_json`: generator, samples, sizes and seed of the preferences block; layout.candidate_settings)."""
    from w2s_align.infer.generate import generations_frame
    from w2s_align.models.causal_lm import base_lm

    corpus, prefs = CorpusSpec.from_json(corpus_json), json.loads(settings_json)
    need = sum(prefs["sizes"][s] for s in PAIR_SPLITS)
    # the gold corpus's pool (evaluation prompts left out), drawn with the track's own seed and size
    pool_corpus = dataclasses.replace(corpus, sizes={"weak_train": need, "weak_label": 0, "val": 0})
    pool = prompt_pool(pool_corpus, read_parquet(prompts_path, ["prompt"])["prompt"],
                       GoldSpec(generator=prefs["generator"], judge="", seed=prefs["seed"]))
    pool = split_prompts(pool.assign(id=[short_hash(p) for p in pool["prompt"]]), prefs["sizes"], prefs["seed"])
    model, tokenizer = base_lm(ModelSpec.from_json(generator_json), local_dir)
    decoding = Decoding.from_dict({**Decoding.from_json(decoding_json).non_defaults(), "samples": prefs["samples"]})
    cands = generations_frame(model, tokenizer, pool, decoding, prefs["generator"], short_hash(generator_json),
                              prefs["seed"], threads, f"candidates ({prefs['samples']} per prompt)", column="text",
                              with_nll=True)
    cands = cands.rename(columns={"prompt_id": "id"})
    cands["text"] = cands["text"].fillna("")
    distinct = cands.groupby("id")["text"].nunique()
    log.info("%d prompts x %d candidates (%s); %d prompts with a single distinct text", len(pool), prefs["samples"],
             ", ".join(f"{s} {int((pool.split == s).sum())}" for s in PAIR_SPLITS), int((distinct < 2).sum()))
    write_parquet(cands.sort_values(["split", "id", "sample"]).reset_index(drop=True), out)


def judge_candidates(candidates: str, judge_json: str, out: str, threads: int, cache_dir: str | None = None,
                     model_file: str | None = None, meta_file: str | None = None) -> None:
    """One judge's toxicity score of every candidate (cached by text hash like every scorer)."""
    from w2s_align.scoring.scorers import build_scorer, score_texts

    cands = read_parquet(candidates, CANDIDATE_COLUMNS)
    judge = build_scorer(judge_json, model_file, meta_file, threads)
    judged = cands[["id", "split", "sample"]].assign(score=score_texts(judge, cands["text"].tolist(), cache_dir))
    margin = judged.groupby("id")["score"].agg(lambda x: x.max() - x.min())
    log.info("judge: mean toxicity %.3f; best-vs-worst margin per prompt: median %.3f, >= 0.2 for %.1f%% of prompts",
             float(judged["score"].mean()), float(margin.median()), 100 * float((margin >= 0.2).mean()))
    write_parquet(judged, out)


def preference_pairs(candidates: pd.DataFrame, judged: pd.DataFrame, split: str,
                     top_fraction: float | None = None) -> pd.DataFrame:
    """A judge's pair for every prompt of one split: its least toxic candidate (chosen; ties: the first sample)
    against its most toxic (rejected; ties: the last), with the margin as confidence; prompts whose two are
    equally scored or the same text are dropped; `top_fraction` keeps the most confident pairs."""
    df = candidates[candidates.split == split].merge(judged[["id", "sample", "score"]], on=["id", "sample"],
                                                     how="left")
    if df["score"].isna().any():
        raise PipelineError(f"the judge's scores do not cover every {split} candidate; were they made from other "
                            "candidates?")
    ranked = df.sort_values(["id", "score", "sample"], kind="stable").groupby("id", sort=True)
    best, worst = ranked.head(1).set_index("id"), ranked.tail(1).set_index("id")
    pairs = pd.DataFrame({"prompt": best["prompt"], "chosen": best["text"], "rejected": worst.loc[best.index, "text"],
                          "chosen_sample": best["sample"], "rejected_sample": worst.loc[best.index, "sample"],
                          "confidence": worst.loc[best.index, "score"] - best["score"]}).reset_index()
    pairs = pairs[(pairs.confidence > 0) & (pairs.chosen != pairs.rejected)]
    if top_fraction is not None:
        keep = max(1, int(round(top_fraction * len(pairs))))
        pairs = pairs.sort_values("confidence", ascending=False, kind="stable").head(keep)
    if pairs.empty:
        raise PipelineError(f"no {split} prompt has two different candidates with different scores")
    return pairs.reset_index(drop=True)


def pair_weights(confidence: np.ndarray, weighting: str) -> np.ndarray:
    """Per-pair loss weights: all 1 (plain DPO), or the judge's margin scaled to mean 1 (confidence, CW-PO)."""
    if weighting == "none":
        return np.ones(len(confidence))
    if weighting == "confidence":
        mean = float(np.mean(confidence))
        return confidence / mean if mean > 0 else np.ones(len(confidence))
    raise PipelineError(f"unknown dpo_weighting {weighting!r}: none or confidence")
