"""What every training loop shares: optimisation settings, torch set-up, autocast and batching."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import torch

from w2s_align.io import PipelineError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainParams:
    lr: float = 1e-4
    epochs: int = 2
    batch_size: int = 16
    eval_batch_size: int = 64
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1

    @classmethod
    def from_json(cls, text: str) -> "TrainParams":
        return cls(**json.loads(text))


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


def length_grouped_batches(lengths: list[int], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length: shuffle, sort within windows of 50 batches, shuffle batches."""
    order = rng.permutation(len(lengths))
    window = 50 * batch_size
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort([lengths[i] for i in chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class Optimisation:
    """AdamW with linear warmup then decay over `steps`, and gradient clipping at norm 1.

    AdamW runs fused (one kernel over all parameters): torch's CPU default updates one tensor at a
    time, which profiled at 14% of a MiniLM training job (benchmarks/README.md, benchmark 6)."""

    def __init__(self, model, hp: TrainParams, steps: int):
        from transformers import get_linear_schedule_with_warmup

        self.params = [p for p in model.parameters() if p.requires_grad]
        fused = self.params[0].device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.AdamW(self.params, lr=hp.lr, weight_decay=hp.weight_decay, fused=fused)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, int(hp.warmup_ratio * steps), steps)

    def step(self, loss: torch.Tensor, epoch: int) -> float:
        """One update from `loss`; a non-finite loss stops training with a clear error."""
        if not torch.isfinite(loss):
            raise PipelineError(f"training diverged: loss {loss.item()} at epoch {epoch}; lower the lr")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0, foreach=True)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()
