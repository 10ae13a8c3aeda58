"""Causal language models for the generation task: build, fine-tune on continuations, save, generate, score.

Checkpoints follow the classifiers' two-file form. Scratch models store all weights and their
tokenizer inline; pretrained models store the fine-tuned weights only (the LoRA adapter, or the full
state dict) and name their base model, which the rule lists as input.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from w2s_align.io import PipelineError, canonical_json, read_split, short_hash, write_atomic, write_parquet, write_text
from w2s_align.loop import Optimisation, TrainParams, autocast, length_grouped_batches, setup_torch
from w2s_align.models import (SCRATCH_SPECIAL, ModelSpec, check_reachable, read_meta, resolve_path,
                              train_scratch_tokenizer)

log = logging.getLogger(__name__)

EOS = "<eos>"


@dataclass(frozen=True)
class Decoding:
    """Sampling settings; continuations are `max_new_tokens` new tokens, sliced at the token level."""

    max_new_tokens: int = 20
    temperature: float = 1.0
    top_p: float = 0.9
    top_k: int = 0  # 0 = off (transformers' generate would apply top_k=50 when unset)
    samples: int = 1  # continuations per prompt
    batch_size: int = 32


def sampling_warpers(decoding: Decoding):
    """transformers' temperature -> top-k -> top-p warpers, top-p done on the most likely tokens only
    (see NucleusWarper). Passed to generate() as its logits_processor, with its own warpers turned off."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper

    warpers = LogitsProcessorList()
    if decoding.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(decoding.temperature))
    if decoding.top_k:
        warpers.append(TopKLogitsWarper(decoding.top_k))
    if decoding.top_p < 1.0:
        warpers.append(NucleusWarper(decoding.top_p))
    return warpers


class NucleusWarper:
    """Nucleus (top-p) filtering that sorts only the `k` most likely tokens when they hold at least
    `top_p` of the probability (nearly every row of a trained LM), else the row's whole vocabulary
    (transformers' TopPLogitsWarper). Keeps the same tokens: the most likely ones until their mass
    reaches top_p, at least one. Sorting SmolLM2's 49k-token vocabulary for 32 rows took 60 ms a step,
    top-256 takes 4 ms."""

    def __init__(self, top_p: float, k: int = 256):
        from transformers import TopPLogitsWarper

        self.top_p, self.k, self.full_sort = top_p, k, TopPLogitsWarper(top_p)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        top, idx = scores.topk(min(self.k, scores.shape[-1]), dim=-1)  # descending
        probs = (top - scores.logsumexp(dim=-1, keepdim=True)).exp()
        more_likely_mass = probs.cumsum(dim=-1) - probs
        keep = more_likely_mass < self.top_p
        keep[:, 0] = True
        out = torch.full_like(scores, -math.inf).scatter_(1, idx, top.masked_fill(~keep, -math.inf))
        short = probs.sum(dim=-1) < self.top_p  # the nucleus reaches past the top k
        if short.any():
            out[short] = self.full_sort(input_ids[short], scores[short])
        return out


# --- models -----------------------------------------------------------------------------------


def base_path(spec: ModelSpec, local_dir: str | None) -> str:
    """Where a pretrained model loads from: the converted folder for GGUF models, else its path."""
    path = local_dir if spec.gguf_file else resolve_path(spec.path)
    check_reachable(path)
    return path


def _load_pretrained(path: str, revision: str | None = None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, revision=revision, dtype=torch.float32)
    return model, tokenizer


def build_lm(spec: ModelSpec, train_texts: list[str], max_length: int, local_dir: str | None = None):
    """A causal LM and tokenizer ready to fine-tune: random init with its own BPE, or pretrained (+LoRA)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if spec.kind == "scratch":
        tokenizer = train_scratch_tokenizer(train_texts, spec.vocab_size, [*SCRATCH_SPECIAL, EOS])
        tokenizer.eos_token = EOS
        config = AutoConfig.for_model(
            spec.architecture, vocab_size=len(tokenizer), n_positions=max_length + 64,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.eos_token_id, **spec.size,
        )
        model = AutoModelForCausalLM.from_config(config)
    elif spec.kind == "pretrained":
        model, tokenizer = _load_pretrained(base_path(spec, local_dir), spec.revision)
    else:
        raise PipelineError(f"model kind {spec.kind!r} cannot generate text; use scratch or pretrained")
    if spec.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if spec.lora:
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, **spec.lora))
    return model, tokenizer


def base_lm(spec: ModelSpec, local_dir: str | None = None):
    """The untuned pretrained model (the 'base' row and the reference LM for perplexity)."""
    if spec.kind != "pretrained":
        raise PipelineError("only a pretrained model has an untuned base to evaluate")
    model, tokenizer = _load_pretrained(base_path(spec, local_dir), spec.revision)
    return model.eval(), tokenizer


def trained_state(model) -> dict[str, torch.Tensor]:
    """The weights fine-tuning changed: the LoRA adapter, or every weight."""
    if hasattr(model, "peft_config"):
        from peft import get_peft_model_state_dict

        return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(model).items()}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def save_lm(model, tokenizer, spec: ModelSpec, model_file: str, meta_file: str, extra: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in trained_state(model).items()}
    meta = {"kind": "causal_lm", "spec": asdict(spec), "adapter": hasattr(model, "peft_config"), **extra}
    if spec.kind == "scratch":
        meta |= {"config": model.config.to_dict(), "tokenizer": tokenizer.backend_tokenizer.to_str(),
                 "special_tokens": {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}}
    write_atomic(model_file, lambda tmp: save_file(state, str(tmp)))
    write_text(canonical_json(meta), meta_file)


def load_lm(model_file: str, meta_file: str, local_dir: str | None = None):
    """A checkpoint written by save_lm, ready for inference (LoRA merged)."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    meta = read_meta(meta_file)
    if meta.get("kind") != "causal_lm":
        raise PipelineError(f"{meta_file}: not a language-model checkpoint (kind {meta.get('kind')!r})")
    spec = ModelSpec(**meta["spec"])
    try:
        state = load_file(model_file)
    except Exception as exc:
        raise PipelineError(f"cannot read checkpoint {model_file}: {exc}") from exc
    if spec.kind == "scratch":
        config_dict = dict(meta["config"])
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(config_dict.pop("model_type"), **config_dict))
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(meta["tokenizer"]),
                                            **meta["special_tokens"])
    else:
        model, tokenizer = _load_pretrained(base_path(spec, local_dir), spec.revision)
    try:
        if meta["adapter"]:
            from peft import (LoraConfig, TaskType, get_peft_model, get_peft_model_state_dict,
                              set_peft_model_state_dict)

            model = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, **spec.lora))
            expected = set(get_peft_model_state_dict(model))
            if set(state) != expected:
                raise ValueError(f"adapter weights missing {sorted(expected - set(state))[:5]}, "
                                 f"unexpected {sorted(set(state) - expected)[:5]}")
            set_peft_model_state_dict(model, state)
            model = model.merge_and_unload()
        else:
            model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise PipelineError(f"checkpoint {model_file} does not match its model.json: {exc}") from exc
    return model.eval(), tokenizer, meta


# --- data -------------------------------------------------------------------------------------


def encode_pairs(tokenizer, prompts: list[str], continuations: list[str], max_length: int,
                 add_eos: bool = True) -> list[dict]:
    """Token ids of prompt + continuation (+ EOS); labels are -100 on the prompt, so the loss and the
    perplexity count continuation tokens only. Over-long rows lose prompt tokens from the left."""
    p_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(list(continuations), add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id] if add_eos else []
    feats = []
    for p, c in zip(p_ids, c_ids):
        c = (c + eos)[:max_length - 1]
        p = p[-(max_length - len(c)):] if len(p) + len(c) > max_length else p
        feats.append({"input_ids": p + c, "labels": [-100] * len(p) + c})
    return feats


def collate(feats: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right padding: pad ids in the inputs, -100 in the labels, zeros in the attention mask."""
    width = max(len(f["input_ids"]) for f in feats)
    ids = torch.full((len(feats), width), pad_id, dtype=torch.long)
    labels = torch.full((len(feats), width), -100, dtype=torch.long)
    mask = torch.zeros((len(feats), width), dtype=torch.long)
    for i, f in enumerate(feats):
        n = len(f["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(f["input_ids"]), torch.tensor(f["labels"]), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def continuation_nll(model, tokenizer, feats: list[dict], batch_size: int, device: torch.device,
                     desc: str = "score") -> tuple[np.ndarray, np.ndarray]:
    """Summed negative log-likelihood and token count of each row's labelled (continuation) tokens."""
    order = np.argsort([len(f["input_ids"]) for f in feats], kind="stable")
    nll, count = np.zeros(len(feats)), np.zeros(len(feats), dtype=np.int64)
    model.eval()
    with torch.inference_mode():
        for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
            idx = order[start:start + batch_size]
            batch = collate([feats[i] for i in idx], tokenizer.pad_token_id)
            labels = batch.pop("labels")[:, 1:].to(device)
            with autocast(device):
                logits = model(**{k: v.to(device) for k, v in batch.items()}).logits[:, :-1].float()
            token_nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100,
                                                          reduction="none")
            nll[idx] = token_nll.sum(1).cpu().numpy()
            count[idx] = (labels != -100).sum(1).cpu().numpy()
    return nll, count


# --- training ---------------------------------------------------------------------------------


def fit_lm(model, tokenizer, train_feats: list[dict], val_feats: list[dict], hp: TrainParams,
           device: torch.device, seed: int):
    """AdamW + linear warmup/decay on the continuation tokens; keeps the epoch with the lowest val loss."""
    model.to(device)
    steps = hp.epochs * math.ceil(len(train_feats) / hp.batch_size)
    optimisation = Optimisation(model, hp, steps)
    rng = np.random.default_rng(seed)
    lengths = [len(f["input_ids"]) for f in train_feats]
    best, history = (math.inf, -1, None), []
    for epoch in range(hp.epochs):
        model.train()
        batches = length_grouped_batches(lengths, hp.batch_size, rng)
        total = 0.0
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{hp.epochs}", leave=False)
        for idx in bar:
            batch = {k: v.to(device) for k, v in collate([train_feats[i] for i in idx], tokenizer.pad_token_id).items()}
            with autocast(device):
                loss = model(**batch).loss
            value = optimisation.step(loss, epoch + 1)
            total += value
            bar.set_postfix(loss=f"{value:.3f}")
        nll, count = continuation_nll(model, tokenizer, val_feats, hp.eval_batch_size, device, "validate")
        val_loss = float(nll.sum() / max(count.sum(), 1))
        history.append({"epoch": epoch + 1, "train_loss": total / len(batches), "val_loss": val_loss})
        log.info("epoch %d/%d: train loss %.4f, validation loss %.4f (perplexity %.1f)", epoch + 1, hp.epochs,
                 total / len(batches), val_loss, math.exp(val_loss))
        if val_loss < best[0]:
            best = (val_loss, epoch + 1, copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()}))
    if hp.epochs > 1:
        model.load_state_dict(best[2])
    log.info("selected epoch %d (validation loss %.4f)", best[1], best[0])
    return model.cpu(), {"selected_epoch": best[1], "history": history}


def _targets(df: pd.DataFrame, column: str) -> tuple[list[str], list[str]]:
    return df["prompt"].tolist(), df[column].fillna("").tolist()


def train_lm(train_path: str, train_split: str, val_path: str, target: str, spec_json: str, hparams_json: str,
             max_length: int, seed: int, threads: int, model_out: str, meta_out: str,
             local_dir: str | None = None) -> None:
    """Fine-tune on the weak_label (or weak_train) prompts' gold continuations (`gt`) or weak generations
    (`weak`) and save the checkpoint; validation uses the same kind of target on val prompts."""
    spec, hp = ModelSpec.from_json(spec_json), TrainParams.from_json(hparams_json)
    column = {"gt": "continuation", "weak": "weak_continuation"}[target]
    train_df = read_split(train_path, train_split, ["prompt", column])
    val_df = read_split(val_path, "val", ["prompt", column])
    device = setup_torch(threads, seed)
    texts = [p + c for p, c in zip(*_targets(train_df, column))]
    model, tokenizer = build_lm(spec, texts, max_length, local_dir)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("training %s LM on %d %s continuations (%.2fM trainable parameters), validating on %d", spec.kind,
             len(train_df), target, n_train / 1e6, len(val_df))
    train_feats = encode_pairs(tokenizer, *_targets(train_df, column), max_length)
    val_feats = encode_pairs(tokenizer, *_targets(val_df, column), max_length)
    model, info = fit_lm(model, tokenizer, train_feats, val_feats, hp, device, seed)
    extra = {"hparams": json.loads(hparams_json), "target": target, "max_length": max_length, "seed": seed,
             "config_hash": short_hash(spec_json + hparams_json), **info}
    save_lm(model, tokenizer, spec, model_out, meta_out, extra)


# --- generation -------------------------------------------------------------------------------


@contextlib.contextmanager
def _restore(tokenizer, padding_side: str):
    try:
        yield
    finally:
        tokenizer.padding_side = padding_side


def generate(model, tokenizer, prompts: list[str], decoding: Decoding, device: torch.device, seed: int,
             desc: str = "generate") -> pd.DataFrame:
    """`decoding.samples` continuations per prompt: left-padded batches of similar length, sampled
    `max_new_tokens` new tokens, sliced at the token level and decoded without special tokens."""
    ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    per_batch = max(1, decoding.batch_size // decoding.samples)
    rows, start_time = [], time.monotonic()
    torch.manual_seed(seed)
    model.to(device).eval()
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    warpers = sampling_warpers(decoding)
    with torch.inference_mode(), _restore(tokenizer, padding_side):
        for start in tqdm(range(0, len(order), per_batch), desc=desc, leave=False):
            idx = order[start:start + per_batch]
            batch = tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt").to(device)
            with autocast(device):
                out = model.generate(
                    **batch, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,  # done by the warpers
                    logits_processor=warpers, max_new_tokens=decoding.max_new_tokens,
                    num_return_sequences=decoding.samples, pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            new = out[:, batch["input_ids"].shape[1]:].cpu()
            texts = tokenizer.batch_decode(new, skip_special_tokens=True)
            n_new = (~torch.isin(new, torch.tensor(tokenizer.all_special_ids))).sum(1).tolist()
            for j, (text, n) in enumerate(zip(texts, n_new)):
                rows.append({"row": int(idx[j // decoding.samples]), "sample": j % decoding.samples,
                             "continuation": text, "n_new_tokens": n})
    elapsed = time.monotonic() - start_time
    log.info("%s: %d prompts x %d samples in %.1f s (%.2f prompts/s, %.1f continuations/s)", desc, len(prompts),
             decoding.samples, elapsed, len(prompts) / elapsed, len(rows) / elapsed)
    return pd.DataFrame(rows).sort_values(["row", "sample"]).reset_index(drop=True)


def write_generations(model, tokenizer, prompts_df: pd.DataFrame, decoding: Decoding, out: str, model_name: str,
                      config_hash: str, seed: int, threads: int, desc: str = "generate",
                      column: str = "continuation") -> None:
    df = generations_frame(model, tokenizer, prompts_df, decoding, model_name, config_hash, seed, threads, desc,
                           column)
    log.info("%d continuations written to %s (%.1f%% empty)", len(df), out,
             100 * (df[column].str.strip() == "").mean())
    write_parquet(df, out)


def generations_frame(model, tokenizer, prompts_df: pd.DataFrame, decoding: Decoding, model_name: str,
                      config_hash: str, seed: int, threads: int, desc: str = "generate",
                      column: str = "continuation") -> pd.DataFrame:
    """Continuations of every prompt row with their provenance (model, decoding, config hash)."""
    device = setup_torch(threads, seed)
    gen = generate(model, tokenizer, prompts_df["prompt"].tolist(), decoding, device, seed, desc)
    keep = [c for c in ("id", "split", "prompt", "continuation", "prompt_toxicity") if c in prompts_df.columns]
    base = prompts_df[keep].rename(columns={"id": "prompt_id", "continuation": "gold_continuation"})
    df = base.iloc[gen["row"]].reset_index(drop=True)
    df["sample"] = gen["sample"].to_numpy()
    df[column] = gen["continuation"].to_numpy()
    df["n_new_tokens"] = gen["n_new_tokens"].to_numpy()
    df["model"] = model_name
    df["decoding"] = canonical_json(asdict(decoding))
    df["config_hash"] = config_hash
    return df
