"""Stages of the toxicity generation task: weak generations, strong LMs, scorer, perplexity, metrics.

Every model's evaluation output is `generations.parquet`: k sampled continuations of each
evaluation prompt (columns prompt_id, sample, prompt, continuation, n_new_tokens + provenance).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from w2s_align.io import read_parquet, read_split, short_hash, write_parquet
from w2s_align.lm import Decoding, base_lm, continuation_nll, encode_pairs, load_lm, write_generations
from w2s_align.loop import setup_torch
from w2s_align.models import ModelSpec

log = logging.getLogger(__name__)


def eval_decoding(decoding_json: str, samples: int) -> Decoding:
    return Decoding(**{**json.loads(decoding_json), "samples": samples})


def held_out_prompts(label_path: str, val_path: str) -> pd.DataFrame:
    """The prompts the weak LM labels: weak_label (trains the students) and val (selects their epoch)."""
    return pd.concat([read_split(label_path, "weak_label", ["prompt", "continuation"]),
                      read_split(val_path, "val", ["prompt", "continuation"])], ignore_index=True)


def weak_generations(model_file: str, meta_file: str, label_path: str, val_path: str, test_path: str,
                     decoding_json: str, eval_samples: int, labels_out: str, eval_out: str, model_name: str,
                     seed: int, threads: int) -> None:
    """The weak LM's 'weak labels' (one continuation of each weak_label and val prompt) and its
    evaluation generations, from one loaded model."""
    model, tokenizer, meta = load_lm(model_file, meta_file)
    write_generations(model, tokenizer, held_out_prompts(label_path, val_path), eval_decoding(decoding_json, 1),
                      labels_out, model_name, meta["config_hash"], seed, threads, "weak labels",
                      column="weak_continuation")
    write_generations(model, tokenizer, read_split(test_path, "test", ["prompt"]),
                      eval_decoding(decoding_json, eval_samples), eval_out, model_name, meta["config_hash"], seed,
                      threads, "evaluation prompts")


def base_generations(spec_json: str, local_dir: str | None, test_path: str, decoding_json: str, eval_samples: int,
                     out: str, model_name: str, seed: int, threads: int) -> None:
    """Continuations of the untuned strong model (the 'base' row)."""
    model, tokenizer = base_lm(ModelSpec.from_json(spec_json), local_dir)
    write_generations(model, tokenizer, read_split(test_path, "test", ["prompt"]),
                      eval_decoding(decoding_json, eval_samples), out, model_name, short_hash(spec_json), seed,
                      threads, "evaluation prompts")


def model_generations(model_file: str, meta_file: str, local_dir: str | None, test_path: str, decoding_json: str,
                      eval_samples: int, out: str, model_name: str, seed: int, threads: int) -> None:
    """Continuations of a fine-tuned LM checkpoint (ceiling or student)."""
    model, tokenizer, meta = load_lm(model_file, meta_file, local_dir)
    write_generations(model, tokenizer, read_split(test_path, "test", ["prompt"]),
                      eval_decoding(decoding_json, eval_samples), out, model_name, meta["config_hash"], seed,
                      threads, "evaluation prompts")


def perplexity(generations: str, spec_json: str, local_dir: str | None, max_length: int, out: str,
               threads: int, batch_size: int = 32) -> None:
    """Summed NLL and token count of each continuation (given its prompt) under a fixed reference LM."""
    df = read_parquet(generations, ["prompt", "prompt_id", "sample", "continuation"])
    device = setup_torch(threads, 0)
    model, tokenizer = base_lm(ModelSpec.from_json(spec_json), local_dir)
    model.to(device)
    feats = encode_pairs(tokenizer, df["prompt"].tolist(), df["continuation"].fillna("").tolist(), max_length,
                         add_eos=False)
    nll, count = continuation_nll(model, tokenizer, feats, batch_size, device, "perplexity")
    result = df[["prompt_id", "sample"]].assign(nll_sum=nll, n_tokens=count)
    log.info("reference-LM perplexity of %s: %.1f over %d tokens", generations,
             float(np.exp(nll.sum() / max(count.sum(), 1))), int(count.sum()))
    write_parquet(result, out)
