"""Training stage of the causal LMs: the weak LM, the ceiling (gold continuations) and the student
(weak continuations), with the loss on continuation tokens only."""

from __future__ import annotations

import json
import logging
import math

import pandas as pd

from w2s_align.device import setup_torch
from w2s_align.files import read_split, short_hash
from w2s_align.models.causal_lm import build_lm, continuation_nll, save_lm
from w2s_align.models.sequences import collate, encode_pairs
from w2s_align.settings.specs import ModelSpec, TrainParams
from w2s_align.train.loop import fit

log = logging.getLogger(__name__)

TARGET_COLUMNS = {"gt": "continuation", "weak": "weak_continuation"}


def _pairs(df: pd.DataFrame, column: str) -> tuple[list[str], list[str]]:
    return df["prompt"].tolist(), df[column].fillna("").tolist()


def train_lm(
    train_path: str,
    train_split: str,
    val_path: str,
    target: str,
    spec_json: str,
    hparams_json: str,
    max_length: int,
    seed: int,
    threads: int,
    model_out: str,
    meta_out: str,
    local_dir: str | None = None,
) -> None:
    """Fine-tune on the weak_label (or weak_train) prompts' gold continuations (`gt`) or weak generations
    (`weak`) and save the checkpoint; validation uses the same kind of target on val prompts."""
    spec, hp = ModelSpec.from_json(spec_json), TrainParams.from_json(hparams_json)
    column = TARGET_COLUMNS[target]
    train_df = read_split(train_path, train_split, ["prompt", column])
    val_df = read_split(val_path, "val", ["prompt", column])
    device = setup_torch(threads, seed)
    texts = [p + c for p, c in zip(*_pairs(train_df, column))]
    model, tokenizer, dtypes = build_lm(spec, texts, max_length, local_dir)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info(
        "training %s LM on %d %s continuations (%.2fM trainable parameters), validating on %d",
        spec.kind,
        len(train_df),
        target,
        n_train / 1e6,
        len(val_df),
    )
    train_feats = encode_pairs(tokenizer, *_pairs(train_df, column), max_length)
    val_feats = encode_pairs(tokenizer, *_pairs(val_df, column), max_length)

    def val_loss() -> float:
        nll, count = continuation_nll(
            model, tokenizer, val_feats, hp.eval_batch_size, device, "validate", dtypes.compute
        )
        loss = float(nll.sum() / max(count.sum(), 1))
        log.info("validation perplexity %.1f", math.exp(loss))
        return loss

    info = fit(
        model,
        train_feats,
        lambda feats: collate(feats, tokenizer.pad_token_id),
        lambda out, idx: out.loss,
        val_loss,
        hp,
        device,
        seed,
        metric="val_loss",
        higher_is_better=False,
        compute=dtypes.compute,
    )
    extra = {
        "hparams": json.loads(hparams_json),
        "target": target,
        "max_length": max_length,
        "seed": seed,
        "config_hash": short_hash(spec_json + hparams_json),
        **info,
    }
    save_lm(model, tokenizer, spec, model_out, meta_out, extra)
