"""Pair log-probs of the preference track: the summed log-prob of both texts of every gold test pair under a
trained LM or the untuned base (with the base's, they give the DPO implicit reward)."""

from __future__ import annotations

import pandas as pd

from w2s_align.data.preferences import CANDIDATE_COLUMNS, GOLD_PAIR_COLUMNS
from w2s_align.device import setup_torch
from w2s_align.files import read_parquet, write_parquet
from w2s_align.models.causal_lm import continuation_nll, load_lm, pretrained_lm
from w2s_align.models.sequences import encode_pairs
from w2s_align.settings.specs import ModelSpec

LOGP_COLUMNS = ["id", "sample", "logp"]


def pair_logps(
    candidates: str,
    gold_pairs: str,
    out: str,
    max_length: int,
    threads: int,
    model_file: str | None = None,
    meta_file: str | None = None,
    spec_json: str | None = None,
    local_dir: str | None = None,
    batch_size: int = 32,
) -> None:
    """Summed log-prob of both texts of every gold test pair (the `gold_test_pairs` file), given its prompt,
    under a trained LM (model/meta) or the untuned base (spec_json): with the base's, they give the implicit
    reward."""
    cands = read_parquet(candidates, CANDIDATE_COLUMNS)
    pairs = read_parquet(gold_pairs, GOLD_PAIR_COLUMNS)
    keys = pd.concat(
        [
            pairs[["id", "sample_a"]].set_axis(["id", "sample"], axis=1),
            pairs[["id", "sample_b"]].set_axis(["id", "sample"], axis=1),
        ]
    )
    texts = cands.merge(keys, on=["id", "sample"]).sort_values(["id", "sample"]).reset_index(drop=True)
    device = setup_torch(threads, 0)
    if model_file:
        model, tokenizer, _ = load_lm(model_file, meta_file, local_dir)
    else:
        model, tokenizer = pretrained_lm(ModelSpec.from_json(spec_json), local_dir)
    model.to(device)
    feats = encode_pairs(
        tokenizer, texts["prompt"].tolist(), texts["text"].tolist(), max_length, add_eos=False
    )
    nll, _ = continuation_nll(model, tokenizer, feats, batch_size, device, f"{len(pairs)} test pairs")
    write_parquet(texts[["id", "sample"]].assign(logp=-nll), out)
