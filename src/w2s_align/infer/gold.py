"""Gold continuations where the data has none: the untuned strong model samples k continuations of each
training prompt and a gold judge (a toxicity scorer, preferably not the evaluation scorer) keeps the least
toxic of those fluent enough (perplexity under the generator, from the logits of its own sampling, within a
bound of the prompt's median).

One cached stage per task (`gold_corpus`): every seed's fine-tuning splits are cut from its output, and the
evaluation prompts are removed from the pool first, so no model ever trains on an evaluation prompt.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from w2s_align.data.corpus import FINETUNE_SPLITS
from w2s_align.data.prompt_pool import training_prompts
from w2s_align.errors import PipelineError
from w2s_align.files import read_parquet, short_hash, write_parquet
from w2s_align.infer.generate import generations_frame
from w2s_align.models.causal_lm import pretrained_lm
from w2s_align.scoring.scorers import build_scorer, score_texts
from w2s_align.settings.specs import CorpusSpec, Decoding, GoldSpec, ModelSpec

log = logging.getLogger(__name__)


def select_gold(samples: pd.DataFrame, ratio: float) -> pd.DataFrame:
    """Per prompt, the sample with the lowest judge toxicity among those whose perplexity is at most `ratio` x
    the prompt's median (ties: the first sample). Needs columns prompt_row, sample, judge_toxicity,
    perplexity."""
    median = samples.groupby("prompt_row")["perplexity"].transform("median")
    fluent = samples[(samples["perplexity"] <= ratio * median) & samples["continuation"].str.strip().ne("")]
    fluent = fluent.sort_values(["prompt_row", "judge_toxicity", "sample"], kind="stable")
    return fluent.groupby("prompt_row", sort=True).head(1).reset_index(drop=True)


def make_gold(
    corpus_json: str,
    prompts_path: str,
    generator_json: str,
    local_dir: str | None,
    judge_json: str,
    decoding_json: str,
    out: str,
    threads: int,
    cache_dir: str | None = None,
    judge_model: str | None = None,
    judge_meta: str | None = None,
) -> None:
    """Sample, judge and keep one gold continuation per training prompt (see the module docstring)."""
    corpus = CorpusSpec.from_json(corpus_json)
    gold = GoldSpec.from_dict(corpus.gold)
    need = sum(corpus.sizes[s] for s in FINETUNE_SPLITS)  # every seed's fine-tuning splits are cut from these
    pool = training_prompts(corpus, read_parquet(prompts_path, ["prompt"])["prompt"], need, gold.seed)
    pool["id"] = [short_hash(p) for p in pool["prompt"]]
    generator = ModelSpec.from_json(generator_json)
    model, tokenizer = pretrained_lm(generator, local_dir)
    decoding = Decoding.from_dict(
        {**Decoding.from_json(decoding_json).non_defaults(), "samples": gold.samples}
    )
    samples = generations_frame(
        model,
        tokenizer,
        pool,
        decoding,
        "gold",
        short_hash(generator_json),
        gold.seed,
        threads,
        f"gold candidates ({gold.samples} per prompt)",
        with_nll=True,
    )
    samples["prompt_row"] = samples.groupby("prompt_id", sort=False).ngroup()
    samples["perplexity"] = np.exp(samples["nll"] / np.maximum(samples["n_new_tokens"], 1))
    judge = build_scorer(judge_json, judge_model, judge_meta, threads)
    samples["judge_toxicity"] = score_texts(judge, samples["continuation"].fillna("").tolist(), cache_dir)
    best = select_gold(samples, gold.max_perplexity_ratio)
    if len(best) < len(pool):
        raise PipelineError(
            f"{len(pool) - len(best)} prompts have no non-empty candidate continuation; sample more "
            "(corpus.gold.samples)"
        )
    log.info(
        "gold: judge toxicity %.3f (first samples) -> %.3f (kept); generator perplexity %.1f -> %.1f",
        samples.loc[samples["sample"] == 0, "judge_toxicity"].mean(),
        best["judge_toxicity"].mean(),
        samples.loc[samples["sample"] == 0, "perplexity"].median(),
        best["perplexity"].median(),
    )
    keep = ["prompt_id", "prompt", "continuation", "sample", "judge_toxicity", "perplexity"]
    write_parquet(best[keep].rename(columns={"prompt_id": "id", "sample": "selected_sample"}), out)
