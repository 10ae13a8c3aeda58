"""The preference track's data: candidate pairs, judges' preferences, and the pairs a DPO run learns from.

Candidates (one cached stage per task): the untuned strong model samples two continuations of each training
prompt (the evaluation prompts are left out of the pool, as for the gold corpus); prompts are split once into
train / val / test. A judge (any scorer) scores both texts of every pair; its preference is the less toxic text
and its confidence the score margin |a - b|. Weak judges' preferences train the students, the gold judge's the
ceiling and label the test pairs.
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
CANDIDATE_COLUMNS = ["id", "split", "prompt", "text_a", "text_b"]
JUDGED_COLUMNS = ["id", "split", "score_a", "score_b"]


def split_prompts(pool: pd.DataFrame, sizes: dict[str, int], seed: int) -> pd.DataFrame:
    """Assign train / val / test to the pool's prompts (a seeded permutation; the same for every run seed)."""
    order = np.random.default_rng(seed).permutation(len(pool))
    labels = np.repeat(PAIR_SPLITS, [sizes[s] for s in PAIR_SPLITS])
    out = pool.iloc[order[:len(labels)]].assign(split=labels)
    return out.sort_values(["split", "prompt"]).reset_index(drop=True)


def make_candidates(corpus_json: str, settings_json: str, prompts_path: str, generator_json: str,
                    local_dir: str | None, decoding_json: str, out: str, threads: int) -> None:
    """Two sampled continuations of every train/val/test prompt by the untuned generator, one row per pair
    (`settings_json`: generator, sizes and seed of the preferences block; layout.candidate_settings)."""
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
    decoding = Decoding.from_dict({**Decoding.from_json(decoding_json).non_defaults(), "samples": 2})
    samples = generations_frame(model, tokenizer, pool, decoding, prefs["generator"], short_hash(generator_json),
                                prefs["seed"], threads, "candidate pairs", with_nll=True)
    wide = samples.pivot(index="prompt_id", columns="sample", values=["continuation", "nll", "n_new_tokens"])
    pairs = pool.set_index("id").loc[wide.index].reset_index().rename(columns={"index": "id"})
    for j, side in enumerate("ab"):
        pairs[f"text_{side}"] = wide[("continuation", j)].fillna("").to_numpy()
        pairs[f"nll_{side}"] = wide[("nll", j)].to_numpy(dtype=float)
        pairs[f"tokens_{side}"] = wide[("n_new_tokens", j)].to_numpy(dtype=int)
    pairs["generator"] = prefs["generator"]
    pairs["decoding"] = samples["decoding"].iloc[0]
    pairs["config_hash"] = samples["config_hash"].iloc[0]
    log.info("%d candidate pairs (%s); %d with two identical texts", len(pairs),
             ", ".join(f"{s} {int((pairs.split == s).sum())}" for s in PAIR_SPLITS),
             int((pairs.text_a == pairs.text_b).sum()))
    write_parquet(pairs.sort_values(["split", "id"]).reset_index(drop=True), out)


def judge_candidates(candidates: str, judge_json: str, out: str, threads: int, cache_dir: str | None = None,
                     model_file: str | None = None, meta_file: str | None = None) -> None:
    """One judge's toxicity score of both texts of every pair (cached by text hash like every scorer)."""
    from w2s_align.scoring.scorers import build_scorer, score_texts

    pairs = read_parquet(candidates, CANDIDATE_COLUMNS)
    judge = build_scorer(judge_json, model_file, meta_file, threads)
    scores = score_texts(judge, pairs["text_a"].tolist() + pairs["text_b"].tolist(), cache_dir)
    judged = pairs[["id", "split"]].assign(score_a=scores[:len(pairs)], score_b=scores[len(pairs):])
    log.info("judge: mean toxicity %.3f; prefers text a in %.1f%% of pairs", float(scores.mean()),
             100 * float((judged.score_a < judged.score_b).mean()))
    write_parquet(judged, out)


def preference_pairs(candidates: pd.DataFrame, judged: pd.DataFrame, split: str,
                     top_fraction: float | None = None) -> pd.DataFrame:
    """A judge's pairs of one split as prompt / chosen / rejected / confidence (its score margin), without ties
    and identical texts; `top_fraction` keeps the most confident pairs."""
    df = candidates[candidates.split == split].merge(judged[["id", "score_a", "score_b"]], on="id", how="left")
    if df[["score_a", "score_b"]].isna().any().any():
        raise PipelineError(f"the judge's scores do not cover every {split} pair; were they made from other "
                            "candidates?")
    df = df[(df.score_a != df.score_b) & (df.text_a != df.text_b)]
    a_wins = (df.score_a < df.score_b).to_numpy()
    pairs = pd.DataFrame({"id": df["id"].to_numpy(), "prompt": df["prompt"].to_numpy(),
                          "chosen": np.where(a_wins, df.text_a, df.text_b),
                          "rejected": np.where(a_wins, df.text_b, df.text_a),
                          "confidence": (df.score_a - df.score_b).abs().to_numpy()})
    if top_fraction is not None:
        keep = max(1, int(round(top_fraction * len(pairs))))
        pairs = pairs.sort_values("confidence", ascending=False, kind="stable").head(keep)
    if pairs.empty:
        raise PipelineError(f"no {split} pair has two different texts with different scores")
    return pairs.reset_index(drop=True)


def pair_weights(confidence: np.ndarray, weighting: str) -> np.ndarray:
    """Per-pair loss weights: all 1 (plain DPO), or the judge's margin scaled to mean 1 (confidence, CW-PO)."""
    if weighting == "none":
        return np.ones(len(confidence))
    if weighting == "confidence":
        mean = float(np.mean(confidence))
        return confidence / mean if mean > 0 else np.ones(len(confidence))
    raise PipelineError(f"unknown dpo_weighting {weighting!r}: none or confidence")
