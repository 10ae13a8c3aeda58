"""Preference candidates: the untuned strong model samples k continuations of each training prompt of the
preference track (evaluation prompts left out of the pool); prompts are split once into train / val / test."""

from __future__ import annotations

import json
import logging

from w2s_align.data.preferences import PAIR_SPLITS, split_prompts
from w2s_align.data.prompt_pool import training_prompts
from w2s_align.files import read_parquet, short_hash, write_parquet
from w2s_align.infer.generate import generations_frame
from w2s_align.models.causal_lm import pretrained_lm
from w2s_align.settings.specs import CorpusSpec, Decoding, ModelSpec

log = logging.getLogger(__name__)


def make_candidates(
    corpus_json: str,
    settings_json: str,
    prompts_path: str,
    generator_json: str,
    local_dir: str | None,
    decoding_json: str,
    out: str,
    threads: int,
) -> None:
    """k sampled continuations of every train/val/test prompt by the untuned generator, one row per candidate
    (`settings_json`: generator, samples, sizes and seed of the preferences block;
    layout.candidate_settings)."""
    corpus, prefs = CorpusSpec.from_json(corpus_json), json.loads(settings_json)
    need = sum(prefs["sizes"][s] for s in PAIR_SPLITS)
    # the corpus's training prompts (evaluation prompts left out), drawn with the track's own seed and size
    pool = training_prompts(corpus, read_parquet(prompts_path, ["prompt"])["prompt"], need, prefs["seed"])
    pool = split_prompts(
        pool.assign(id=[short_hash(p) for p in pool["prompt"]]), prefs["sizes"], prefs["seed"]
    )
    model, tokenizer = pretrained_lm(ModelSpec.from_json(generator_json), local_dir)
    decoding = Decoding.from_dict(
        {**Decoding.from_json(decoding_json).non_defaults(), "samples": prefs["samples"]}
    )
    cands = generations_frame(
        model,
        tokenizer,
        pool,
        decoding,
        prefs["generator"],
        short_hash(generator_json),
        prefs["seed"],
        threads,
        f"candidates ({prefs['samples']} per prompt)",
        column="text",
        with_nll=True,
    )
    cands = cands.rename(columns={"prompt_id": "id"})
    cands["text"] = cands["text"].fillna("")
    distinct = cands.groupby("id")["text"].nunique()
    log.info(
        "%d prompts x %d candidates (%s); %d prompts with a single distinct text",
        len(pool),
        prefs["samples"],
        ", ".join(f"{s} {int((pool.split == s).sum())}" for s in PAIR_SPLITS),
        int((distinct < 2).sum()),
    )
    write_parquet(cands.sort_values(["split", "id", "sample"]).reset_index(drop=True), out)
