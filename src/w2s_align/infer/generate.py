"""Generation: k sampled continuations per prompt (left-padded batches, token-level slicing), the
generation stages (weak labels, evaluation generations of every model) and reference-LM perplexity.

Every model's evaluation output is `generations.parquet`: k sampled continuations of each evaluation
prompt (columns prompt_id, sample, prompt, continuation, n_new_tokens + provenance).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from w2s_align.device import autocast, setup_torch
from w2s_align.files import read_parquet, read_split, short_hash, write_parquet
from w2s_align.infer.sampling import sampling_warpers
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
    """`decoding.samples` continuations per prompt: left-padded batches of similar length, sampled
    `max_new_tokens` new tokens, sliced at the token level and decoded without special tokens. `with_nll` adds
    each continuation's summed negative log-likelihood under the model's own (unwarped) distribution, `nll`,
    over its `n_new_tokens` tokens (special tokens excluded), at no extra forward pass."""
    ids = prompt_ids(tokenizer, prompts)
    order = np.argsort([len(x) for x in ids], kind="stable")
    per_batch = max(1, decoding.batch_size // decoding.samples)
    rows, start_time = [], time.monotonic()
    torch.manual_seed(seed)
    model.to(device).eval()
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    warpers = sampling_warpers(decoding)
    with torch.inference_mode(), _restore(tokenizer, padding_side):
        for start in tqdm(range(0, len(order), per_batch), desc=desc, leave=False):
            idx = order[start : start + per_batch]
            batch = tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt").to(device)
            with autocast(device, model.dtype):
                out = model.generate(
                    **batch,
                    do_sample=True,
                    temperature=1.0,
                    top_k=0,
                    top_p=1.0,  # done by the warpers
                    logits_processor=warpers,
                    max_new_tokens=decoding.max_new_tokens,
                    num_return_sequences=decoding.samples,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                    return_dict_in_generate=True,
                    output_logits=with_nll,
                )
            new = out.sequences[:, batch["input_ids"].shape[1] :].cpu()
            texts = tokenizer.batch_decode(new, skip_special_tokens=True)
            counted = ~torch.isin(new, torch.tensor(tokenizer.all_special_ids))
            n_new = counted.sum(1).tolist()
            nll = _sampled_nll(out.logits, new, counted) if with_nll else [None] * len(texts)
            for j, (text, n, value) in enumerate(zip(texts, n_new, nll)):
                rows.append(
                    {
                        "row": int(idx[j // decoding.samples]),
                        "sample": j % decoding.samples,
                        "continuation": text,
                        "n_new_tokens": n,
                    }
                    | ({"nll": value} if with_nll else {})
                )
    elapsed = time.monotonic() - start_time
    log.info(
        "%s: %d prompts x %d samples in %.1f s (%.2f prompts/s, %.1f continuations/s)",
        desc,
        len(prompts),
        decoding.samples,
        elapsed,
        len(prompts) / elapsed,
        len(rows) / elapsed,
    )
    return pd.DataFrame(rows).sort_values(["row", "sample"]).reset_index(drop=True)


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
