"""Generation: k sampled continuations per prompt (left-padded batches, token-level slicing), the
generation stages (weak labels, evaluation generations of every model) and reference-LM perplexity.

Every model's evaluation output is `generations.parquet`: k sampled continuations of each evaluation
prompt (columns prompt_id, sample, prompt, continuation, n_new_tokens + provenance).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import logging
import time

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from w2s_align.device import autocast, batch_memory, setup_torch
from w2s_align.files import read_parquet, read_split, short_hash, write_parquet
from w2s_align.infer.sampling import KeyedSampler, sampling_warpers, sequence_keys
from w2s_align.models.causal_lm import continuation_nll, load_lm, pretrained_lm
from w2s_align.models.sequences import encode_pairs, prompt_ids
from w2s_align.settings.specs import Decoding, ModelSpec, canonical_json

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _restore(tokenizer, padding_side: str):
    try:
        yield
    finally:
        tokenizer.padding_side = padding_side


def generate(
    model,
    tokenizer,
    prompts: list[str],
    decoding: Decoding,
    device: torch.device,
    seed: int,
    desc: str = "generate",
    with_nll: bool = False,
) -> pd.DataFrame:
    """`decoding.samples` continuations per prompt: `max_new_tokens` sampled new tokens, sliced at the token
    level and decoded without special tokens. `with_nll` adds each continuation's summed negative
    log-likelihood under the model's own (unwarped) distribution, `nll`, over its `n_new_tokens` tokens
    (special tokens excluded), at no extra forward pass.

    Batches are counted in sequences: every (prompt, sample) is one sequence, sequences are sorted by
    prompt length (little padding) and decoded `sequences_per_call` at a time. Each continuation draws
    from its own random numbers (KeyedSampler): in fp32 the result does not depend on how sequences are
    batched; in bf16 the logits move with the batch's shape (docs/configuration.md#decoding)."""
    from transformers import GenerationConfig, LogitsProcessorList

    ids = prompt_ids(tokenizer, prompts)
    order = np.argsort([len(x) for x in ids], kind="stable")
    rows = np.repeat(order, decoding.samples)
    samples = np.tile(np.arange(decoding.samples), len(order))
    keys = sequence_keys(seed, rows, samples)
    model.to(device).eval()
    longest = max((len(x) for x in ids), default=1)
    per_call = sequences_per_call(model, decoding, longest, device, with_nll)
    config = GenerationConfig(
        do_sample=False,  # the KeyedSampler draws; the greedy step takes its token
        max_new_tokens=decoding.max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        return_dict_in_generate=True,
        output_logits=with_nll,
    )
    warpers = sampling_warpers(decoding)
    out_rows, start_time = [], time.monotonic()
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    with (
        torch.inference_mode(),
        _restore(tokenizer, padding_side),
        tqdm(total=len(rows), desc=desc, unit="seq", leave=False) as bar,
    ):
        for start in range(0, len(rows), per_call):
            chunk = slice(start, start + per_call)
            batch = tokenizer.pad({"input_ids": [ids[i] for i in rows[chunk]]}, return_tensors="pt")
            batch = batch.to(device)
            sampler = KeyedSampler(keys[chunk], batch["input_ids"].shape[1])
            with autocast(device, model.dtype):
                out = model.generate(
                    **batch,
                    generation_config=config,
                    logits_processor=LogitsProcessorList([*warpers, sampler]),
                )
            new = out.sequences[:, batch["input_ids"].shape[1] :].cpu()
            texts = tokenizer.batch_decode(new, skip_special_tokens=True)
            counted = ~torch.isin(new, torch.tensor(tokenizer.all_special_ids))
            n_new = counted.sum(1).tolist()
            nll = _sampled_nll(out.logits, new, counted) if with_nll else [None] * len(texts)
            for row, sample, text, n, value in zip(rows[chunk], samples[chunk], texts, n_new, nll):
                out_rows.append(
                    {"row": int(row), "sample": int(sample), "continuation": text, "n_new_tokens": n}
                    | ({"nll": value} if with_nll else {})
                )
            bar.update(len(texts))
    elapsed = time.monotonic() - start_time
    new_tokens = sum(r["n_new_tokens"] for r in out_rows)
    log.info(
        "%s: %d prompts x %d samples, %d sequences per call, in %.1f s "
        "(%.1f continuations/s, %.0f new tokens/s)",
        desc,
        len(prompts),
        decoding.samples,
        per_call,
        elapsed,
        len(out_rows) / elapsed,
        new_tokens / elapsed,
    )
    return pd.DataFrame(out_rows).sort_values(["row", "sample"]).reset_index(drop=True)


def sequences_per_call(model, decoding: Decoding, prompt_tokens: int, device, with_nll: bool = False) -> int:
    """Sequences decoded per generate() call: as many as device.batch_memory (a quarter of the job's memory
    less the weights) holds, at most `decoding.batch_size`. A sequence holds its KV cache (2 x layers x KV
    heads x head width per token, prompt + new tokens) and its logits: the step's scores, the sampler's
    float64 distribution and cumulative sum, and with `with_nll` the logits of every step."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", 1)
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", 1)
    hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", 64)
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or hidden // heads
    vocab = getattr(cfg, "vocab_size", 1)
    element = torch.finfo(model.dtype).bits // 8
    kv = 2 * layers * kv_heads * head_dim * element * (prompt_tokens + decoding.max_new_tokens)
    logits = vocab * (4 + 4 + 2 * 8 + (4 * decoding.max_new_tokens if with_nll else 0))
    if "logits_to_keep" not in inspect.signature(model.forward).parameters:  # the prompt's logits at step 0
        logits += vocab * 4 * prompt_tokens
    return max(1, min(decoding.batch_size, batch_memory(model, device) // (kv + logits)))


def _sampled_nll(logits: tuple[torch.Tensor, ...], new: torch.Tensor, counted: torch.Tensor) -> list[float]:
    """Summed -log p(token) of the sampled tokens under the raw logits of each step (counted tokens only)."""
    steps = torch.stack([step.float().cpu() for step in logits], dim=1)[:, : new.shape[1]]
    token_nll = -torch.log_softmax(steps, dim=-1).gather(2, new[:, : steps.shape[1], None]).squeeze(2)
    return (token_nll * counted[:, : steps.shape[1]]).sum(1).tolist()


def write_generations(
    model,
    tokenizer,
    prompts_df: pd.DataFrame,
    decoding: Decoding,
    out: str,
    model_name: str,
    config_hash: str,
    seed: int,
    threads: int,
    desc: str = "generate",
    column: str = "continuation",
) -> None:
    df = generations_frame(
        model, tokenizer, prompts_df, decoding, model_name, config_hash, seed, threads, desc, column
    )
    log.info(
        "%d continuations written to %s (%.1f%% empty)",
        len(df),
        out,
        100 * (df[column].str.strip() == "").mean(),
    )
    write_parquet(df, out)


def generations_frame(
    model,
    tokenizer,
    prompts_df: pd.DataFrame,
    decoding: Decoding,
    model_name: str,
    config_hash: str,
    seed: int,
    threads: int,
    desc: str = "generate",
    column: str = "continuation",
    with_nll: bool = False,
) -> pd.DataFrame:
    """Continuations of every prompt row with their provenance (model, decoding, config hash)."""
    device = setup_torch(threads, seed)
    gen = generate(model, tokenizer, prompts_df["prompt"].tolist(), decoding, device, seed, desc, with_nll)
    keep = [
        c for c in ("id", "split", "prompt", "continuation", "prompt_toxicity") if c in prompts_df.columns
    ]
    base = prompts_df[keep].rename(columns={"id": "prompt_id", "continuation": "gold_continuation"})
    df = base.iloc[gen["row"]].reset_index(drop=True)
    df["sample"] = gen["sample"].to_numpy()
    df[column] = gen["continuation"].to_numpy()
    df["n_new_tokens"] = gen["n_new_tokens"].to_numpy()
    if with_nll:
        df["nll"] = gen["nll"].to_numpy()
    df["model"] = model_name
    df["decoding"] = canonical_json(dataclasses.asdict(decoding))
    df["config_hash"] = config_hash
    return df


# --- stages -----------------------------------------------------------------------------------


def eval_decoding(decoding_json: str, samples: int) -> Decoding:
    return Decoding.from_dict({**json.loads(decoding_json), "samples": samples})


def held_out_prompts(label_path: str, val_path: str) -> pd.DataFrame:
    """The prompts the weak LM labels: weak_label (trains the students) and val (selects their epoch)."""
    return pd.concat(
        [
            read_split(label_path, "weak_label", ["prompt", "continuation"]),
            read_split(val_path, "val", ["prompt", "continuation"]),
        ],
        ignore_index=True,
    )


def weak_generations(
    model_file: str,
    meta_file: str,
    label_path: str,
    val_path: str,
    decoding_json: str,
    out: str,
    model_name: str,
    seed: int,
    threads: int,
    local_dir: str | None = None,
) -> None:
    """The weak LM's 'weak labels': one continuation of each weak_label and val prompt."""
    model, tokenizer, meta = load_lm(model_file, meta_file, local_dir)
    write_generations(
        model,
        tokenizer,
        held_out_prompts(label_path, val_path),
        eval_decoding(decoding_json, 1),
        out,
        model_name,
        meta["config_hash"],
        seed,
        threads,
        "weak labels",
        column="weak_continuation",
    )


def model_generations(
    model_file: str,
    meta_file: str,
    local_dir: str | None,
    prompts_path: str,
    decoding_json: str,
    eval_samples: int,
    out: str,
    model_name: str,
    seed: int,
    threads: int,
) -> None:
    """Continuations of the evaluation prompts by a trained LM checkpoint (weak, ceiling or student)."""
    model, tokenizer, meta = load_lm(model_file, meta_file, local_dir)
    write_generations(
        model,
        tokenizer,
        read_split(prompts_path, "test", ["prompt"]),
        eval_decoding(decoding_json, eval_samples),
        out,
        model_name,
        meta["config_hash"],
        seed,
        threads,
        "evaluation prompts",
    )


def base_generations(
    spec_json: str,
    local_dir: str | None,
    prompts_path: str,
    decoding_json: str,
    eval_samples: int,
    out: str,
    model_name: str,
    seed: int,
    threads: int,
) -> None:
    """Continuations of the untuned strong model (the 'base' row)."""
    model, tokenizer = pretrained_lm(ModelSpec.from_json(spec_json), local_dir)
    write_generations(
        model,
        tokenizer,
        read_split(prompts_path, "test", ["prompt"]),
        eval_decoding(decoding_json, eval_samples),
        out,
        model_name,
        short_hash(spec_json),
        seed,
        threads,
        "evaluation prompts",
    )


def perplexity(
    generations: str,
    spec_json: str,
    local_dir: str | None,
    max_length: int,
    out: str,
    threads: int,
    batch_size: int = 32,
) -> None:
    """Summed NLL and token count of each continuation (given its prompt) under a fixed reference LM."""
    df = read_parquet(generations, ["prompt", "prompt_id", "sample", "continuation"])
    device = setup_torch(threads, 0)
    model, tokenizer = pretrained_lm(ModelSpec.from_json(spec_json), local_dir)
    model.to(device)
    feats = encode_pairs(
        tokenizer, df["prompt"].tolist(), df["continuation"].fillna("").tolist(), max_length, add_eos=False
    )
    nll, count = continuation_nll(model, tokenizer, feats, batch_size, device, "perplexity")
    result = df[["prompt_id", "sample"]].assign(nll_sum=nll, n_tokens=count)
    log.info(
        "reference-LM perplexity of %s: %.1f over %d tokens",
        generations,
        float(np.exp(nll.sum() / max(count.sum(), 1))),
        int(count.sum()),
    )
    write_parquet(result, out)
