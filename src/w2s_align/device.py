"""Torch set-up of every job: threads, seeds, determinism, the device, and bf16 autocast on GPUs."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    from transformers import set_seed as hf_set_seed

    hf_set_seed(seed)


def setup_torch(threads: int, seed: int) -> torch.device:
    """Threads, seeds and determinism; CUDA when visible, else CPU (logged)."""
    torch.set_num_threads(max(1, threads))
    set_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    log.info("device: %s (%s)", device, name)
    return device


def autocast(device: torch.device):
    """bf16 autocast where the GPU supports it; plain fp32 on CPU."""
    enabled = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
