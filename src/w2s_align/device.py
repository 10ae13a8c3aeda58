"""Torch set-up of every job: threads, seeds, determinism, which GPU, and the dtype policy."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
GPU_LOCK_DIR_ENV = "W2S_GPU_LOCK_DIR"
_held_gpu_lock = None  # the open lock file of this process's GPU (kept until the process exits)


def set_seed(seed: int) -> None:
    from transformers import set_seed as hf_set_seed

    hf_set_seed(seed)


def setup_torch(threads: int, seed: int) -> torch.device:
    """Threads, seeds and determinism; a free visible GPU when there is one, else the CPU (logged)."""
    torch.set_num_threads(max(1, threads))
    set_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if not torch.cuda.is_available():
        log.info("device: cpu, %d threads", torch.get_num_threads())
        return torch.device("cpu")
    device = torch.device("cuda", claim_gpu(torch.cuda.device_count()))
    torch.cuda.set_device(device)
    log.info(
        "device: %s (%s; CUDA_VISIBLE_DEVICES=%s)",
        device,
        torch.cuda.get_device_name(device),
        os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
    )
    return device


def gpu_lock_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"w2s-align-gpus-{os.getuid()}"
    return Path(os.environ.get(GPU_LOCK_DIR_ENV) or default)


def claim_gpu(n_gpus: int, lock_dir: Path | None = None, poll: float = 5.0) -> int:
    """Index of a visible GPU no other job of this user holds, held until this process exits.

    Under SLURM each job sees only its own GPUs (CUDA_VISIBLE_DEVICES), so this is GPU 0. On a
    workstation every local job sees every GPU: jobs take an exclusive lock file per GPU, so concurrent
    jobs (`--resources gpu=N`) land on different cards; with all cards taken a job waits."""
    global _held_gpu_lock
    if n_gpus <= 1:
        return 0
    folder = lock_dir or gpu_lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for index in range(n_gpus):
            handle = open(folder / f"gpu{index}.lock", "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            _held_gpu_lock = handle
            return index
        if not waited:
            log.info("all %d GPUs are taken by other jobs (locks in %s); waiting", n_gpus, folder)
            waited = True
        time.sleep(poll)


@dataclass(frozen=True)
class Precision:
    """Dtypes of a job: `weights` for frozen (and inference) weights, `compute` for autocast.

    Trainable parameters (LoRA adapters, heads, all weights under full fine-tuning) and their AdamW
    states are always fp32; the forward pass autocasts to `compute`."""

    weights: torch.dtype
    compute: torch.dtype

    def describe(self) -> str:
        name = {v: k for k, v in DTYPES.items()}
        return f"frozen weights {name[self.weights]}, trainable fp32, compute {name[self.compute]}"


def precision(policy: str, device: torch.device, fine_tuning: str | None = None) -> Precision:
    """The dtype policy `auto | bf16 | fp16 | fp32` on `device`; auto = bf16 on a bf16-capable GPU, else fp32.

    `fine_tuning` None (inference), "lora" or "full": full fine-tuning keeps every weight in fp32."""
    if policy == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        compute = torch.bfloat16 if cuda_bf16 else torch.float32
    else:
        compute = DTYPES[policy]
    result = Precision(weights=torch.float32 if fine_tuning == "full" else compute, compute=compute)
    log.info(
        "dtype policy %s on %s%s: %s",
        policy,
        device.type,
        f" ({fine_tuning} fine-tuning)" if fine_tuning else "",
        result.describe(),
    )
    return result


def upcast_trainable(model) -> None:
    """Trainable parameters in fp32 (peft keeps adapters fp32, but a trained head loads in the base's
    dtype)."""
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()


def autocast(device: torch.device, dtype: torch.dtype = torch.float32):
    """Autocast to `dtype` (bf16/fp16 on GPU or CPU); a no-op for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def job_memory(device: torch.device) -> int:
    """Bytes of memory this job has: the GPU's total memory, or on the CPU the host's physical memory
    limited by the job's cgroup (a SLURM allocation, a container). Fixed for a machine and allocation, so
    sizes derived from it (sequences per generation call) are the same on every rerun."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            total = min(total, int(Path(limit_file).read_text().strip()))
    return int(total)


def batch_memory(model, device: torch.device) -> int:
    """Bytes one inference batch may take: a quarter of the job's memory (job_memory), less the weights."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return max(0, job_memory(device) // 4 - weights)


def length_batches(lengths, max_rows: int, max_tokens: int) -> list[list[int]]:
    """Row indices grouped by length (shortest first) into batches of at most `max_rows` rows and
    `max_tokens` padded tokens (rows x the batch's longest row); a row longer than the budget goes alone."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        batch = batches[-1] if batches else None
        if batch is not None and len(batch) < max_rows and (len(batch) + 1) * lengths[i] <= max_tokens:
            batch.append(i)
        else:
            batches.append([i])
    return batches
