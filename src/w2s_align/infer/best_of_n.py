"""Best-of-N weak labels for generation tasks: a weak selector keeps the least toxic of N continuations."""

from __future__ import annotations

import logging

from w2s_align.files import write_parquet
from w2s_align.infer.generate import eval_decoding, generations_frame, held_out_prompts
from w2s_align.models.causal_lm import load_lm
from w2s_align.scoring.scorers import build_scorer, score_texts

log = logging.getLogger(__name__)


def best_of_n(
    model_file: str,
    meta_file: str,
    label_path: str,
    val_path: str,
    decoding_json: str,
    n: int,
    selector_json: str,
    out: str,
    model_name: str,
    seed: int,
    threads: int,
    cache_dir: str | None = None,
    selector_model: str | None = None,
    selector_meta: str | None = None,
    local_dir: str | None = None,
) -> None:
    """Best-of-N weak labels: the weak LM samples `n` continuations of each weak_label and val prompt and
    the selector (a toxicity scorer) keeps the least toxic one (ties: the first sample)."""
    model, tokenizer, meta = load_lm(model_file, meta_file, local_dir)
    samples = generations_frame(
        model,
        tokenizer,
        held_out_prompts(label_path, val_path),
        eval_decoding(decoding_json, n),
        model_name,
        meta["config_hash"],
        seed,
        threads,
        f"weak labels (best of {n})",
        column="weak_continuation",
    )
    selector = build_scorer(selector_json, selector_model, selector_meta, threads)
    samples["selector_toxicity"] = score_texts(
        selector, samples["weak_continuation"].fillna("").tolist(), cache_dir
    )
    best = samples.loc[samples.groupby("prompt_id", sort=False)["selector_toxicity"].idxmin()]
    log.info(
        "best of %d: selector toxicity %.3f (first sample) -> %.3f (selected)",
        n,
        samples.loc[samples["sample"] == 0, "selector_toxicity"].mean(),
        best["selector_toxicity"].mean(),
    )
    write_parquet(
        best.rename(columns={"sample": "selected_sample"}).assign(best_of=n).reset_index(drop=True), out
    )
