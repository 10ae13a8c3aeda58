"""Preference optimisation (DPO) of a LoRA-adapted strong LM on one judge's preferences: the students (a weak
judge, with the strategy's confidence weighting or filtering) and the ceiling (the gold judge).

The loss is `losses.dpo_loss` in the project's one training loop, so DPO shares its optimiser, precision
policy, best-epoch selection and checkpoint format with every other LM (generation, perplexity and pair
scoring load the result like any other). The reference model is the base with the adapter disabled: its
log-probabilities of every training and validation pair are computed once before training, so no second copy
of the model is held in memory.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from w2s_align.data.preferences import CANDIDATE_COLUMNS, JUDGED_COLUMNS, pair_weights, preference_pairs
from w2s_align.device import setup_torch
from w2s_align.errors import PipelineError
from w2s_align.files import read_parquet, short_hash
from w2s_align.models.causal_lm import build_lm, continuation_nll, save_lm
from w2s_align.models.sequences import collate, encode_pairs
from w2s_align.settings.specs import ModelSpec, Strategy, TrainParams
from w2s_align.train.loop import fit
from w2s_align.train.losses import dpo_loss, sequence_logps

log = logging.getLogger(__name__)


def encode_preferences(tokenizer, pairs, max_length: int) -> list[dict]:
    """Per pair: chosen and rejected as prompt + continuation ids (labels on the continuation; no EOS, as the
    candidates were cut at max_new_tokens), `input_ids` = the longer one for length-grouped batching."""
    chosen = encode_pairs(
        tokenizer, pairs["prompt"].tolist(), pairs["chosen"].tolist(), max_length, add_eos=False
    )
    rejected = encode_pairs(
        tokenizer, pairs["prompt"].tolist(), pairs["rejected"].tolist(), max_length, add_eos=False
    )
    return [
        {"input_ids": max(c["input_ids"], r["input_ids"], key=len), "chosen": c, "rejected": r}
        for c, r in zip(chosen, rejected)
    ]


def pair_batch(feats: list[dict], pad_id: int) -> dict:
    """A right-padded batch of the chosen texts, then the rejected ones, with their labels."""
    return collate([f["chosen"] for f in feats] + [f["rejected"] for f in feats], pad_id)


def reference_logps(model, tokenizer, feats: list[dict], batch_size: int, device, compute) -> np.ndarray:
    """[n_pairs, 2] summed log-probs of chosen and rejected under the base: the LoRA adapter disabled."""
    with model.disable_adapter():
        return policy_logps(model, tokenizer, feats, batch_size, device, compute, "reference log-probs")


def policy_logps(
    model, tokenizer, feats: list[dict], batch_size: int, device, compute, desc: str = "pair log-probs"
) -> np.ndarray:
    side = lambda key: [f[key] for f in feats]  # noqa: E731
    nll = [
        continuation_nll(model, tokenizer, side(key), batch_size, device, desc, compute)[0]
        for key in ("chosen", "rejected")
    ]
    return -np.stack(nll, axis=1)


def fit_dpo(
    model,
    tokenizer,
    train_feats: list[dict],
    val_feats: list[dict],
    ref: dict,
    weights,
    beta: float,
    hp: TrainParams,
    device,
    seed: int,
    compute,
) -> dict:
    """The one training loop with the DPO loss: per-pair weights `weights`, reference log-probs `ref`
    ({"train", "val"}: [n, 2] tensors of chosen, rejected), the epoch with the lowest DPO loss on the val
    pairs kept."""
    import torch

    def loss_fn(output, idx):
        labels = pair_batch([train_feats[i] for i in idx], tokenizer.pad_token_id)["labels"].to(device)
        logps = sequence_logps(output.logits, labels)
        n, r = len(idx), ref["train"][idx].to(device)
        return dpo_loss(logps[:n], logps[n:], r[:, 0], r[:, 1], beta, weights[idx].to(device))

    def val_loss() -> float:
        logps = torch.tensor(
            policy_logps(model, tokenizer, val_feats, hp.eval_batch_size, device, compute),
            dtype=torch.float32,
        )
        r = ref["val"]
        loss = float(dpo_loss(logps[:, 0], logps[:, 1], r[:, 0], r[:, 1], beta))
        accuracy = float(((logps[:, 0] - r[:, 0]) > (logps[:, 1] - r[:, 1])).float().mean())
        log.info("validation DPO loss %.4f, implicit-reward accuracy %.3f", loss, accuracy)
        return loss

    def batch(feats):
        out = pair_batch(feats, tokenizer.pad_token_id)
        out.pop("labels")  # the loss needs per-sequence log-probs, not the model's token-mean loss
        return out

    return fit(
        model,
        train_feats,
        batch,
        loss_fn,
        val_loss,
        hp,
        device,
        seed,
        metric="val_dpo_loss",
        higher_is_better=False,
        compute=compute,
    )


def train_dpo(
    candidates: str,
    judged: str,
    beta: float,
    strategy_json: str,
    spec_json: str,
    hparams_json: str,
    max_length: int,
    seed: int,
    threads: int,
    model_out: str,
    meta_out: str,
    local_dir: str | None = None,
) -> None:
    """DPO on the judge's train pairs (the strategy's filtering and weights), epoch chosen by the DPO loss on
    the judge's val pairs; saves the LoRA adapter like any fine-tuned LM."""
    import torch

    strategy = Strategy.from_json(strategy_json)
    spec, hp = ModelSpec.from_json(spec_json), TrainParams.from_json(hparams_json)
    if not spec.lora:
        raise PipelineError(
            "DPO needs a LoRA model (its reference is the base with the adapter disabled); add a "
            "`lora` block to the strong model"
        )
    cands, judge = read_parquet(candidates, CANDIDATE_COLUMNS), read_parquet(judged, JUDGED_COLUMNS)
    train = preference_pairs(cands, judge, "train", strategy.top_fraction)
    val = preference_pairs(cands, judge, "val")
    weights = torch.tensor(
        pair_weights(train["confidence"].to_numpy(), strategy.dpo_weighting or "none"), dtype=torch.float32
    )
    device = setup_torch(threads, seed)
    model, tokenizer, dtypes = build_lm(spec, [], max_length, local_dir)
    model.to(device)
    train_feats, val_feats = (encode_preferences(tokenizer, p, max_length) for p in (train, val))
    ref = {
        name: torch.tensor(
            reference_logps(model, tokenizer, f, hp.eval_batch_size, device, dtypes.compute),
            dtype=torch.float32,
        )
        for name, f in (("train", train_feats), ("val", val_feats))
    }
    log.info(
        "DPO (beta %.3g, weighting %s) on %d pairs (%s), validating on %d; reference prefers the chosen "
        "text in %.1f%% of train pairs",
        beta,
        strategy.dpo_weighting or "none",
        len(train),
        f"top {strategy.top_fraction:.0%} by confidence" if strategy.top_fraction else "all",
        len(val),
        100 * float((ref["train"][:, 0] > ref["train"][:, 1]).float().mean()),
    )

    info = fit_dpo(
        model, tokenizer, train_feats, val_feats, ref, weights, beta, hp, device, seed, dtypes.compute
    )
    extra = {
        "hparams": json.loads(hparams_json),
        "target": "preferences",
        "max_length": max_length,
        "seed": seed,
        "dpo": {"beta": beta, "strategy": json.loads(strategy_json), "pairs": len(train)},
        "config_hash": short_hash(f"{spec_json}{hparams_json}{beta}{strategy_json}"),
        **info,
    }
    save_lm(model, tokenizer, spec, model_out, meta_out, extra)
