"""Legal: the ceiling-weak gap under different split sizes and MiniLM recipes, with its paired bootstrap CI.

    python benchmarks/legal_gap.py --weak-train 1500 --weak-label 2000 --lr 1e-4 --epochs 2 --seeds 0,1,2

Splits come from the pipeline's own `split` (grouped by question, test pool fixed by test_seed); the weak
model is config.yaml's gpt2-scratch on `weak_train`, the ceiling MiniLM-L6 on `weak_label`, both trained by
`TransformerClassifier` as the training rules do. Prints one JSON line per seed (docs/measurements.md).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]


def gap_run(cfg: dict, args: argparse.Namespace, seed: int) -> dict:
    import torch

    from w2s_align.data.classification import clean, split
    from w2s_align.data.sources import load_source
    from w2s_align.device import setup_torch
    from w2s_align.models.classifier import TransformerClassifier
    from w2s_align.settings.settings import Settings, model_spec
    from w2s_align.settings.specs import ModelSpec, Strategy, TaskData, TrainParams

    data = {
        **cfg["tasks"]["legal"]["data"],
        "sizes": {
            "weak_train": args.weak_train,
            "weak_label": args.weak_label,
            "val": args.val,
            "test": args.test,
        },
    }
    spec = TaskData.from_dict(data)
    parts = split(clean(load_source(str(REPO / spec.source), spec.hf_split), spec), spec, seed)
    y = parts["test"]["gt_label"].to_numpy()
    recipes = {
        "weak": ("weak_train", cfg["models"]["gpt2-scratch"]["train"], "gpt2-scratch"),
        "ceiling": ("weak_label", {"lr": args.lr, "epochs": args.epochs, "batch_size": 16}, "minilm-l6"),
    }
    out, correct = (
        {"seed": seed, **{k: getattr(args, k) for k in ("weak_train", "weak_label", "lr", "epochs")}},
        {},
    )
    for role, (rows, hp, model) in recipes.items():
        device = setup_torch(args.threads, seed)
        start, train, val = time.monotonic(), parts[rows], parts["val"]
        model_settings = ModelSpec.from_json(model_spec(Settings.from_config(cfg), model))
        clf = TransformerClassifier.build(model_settings, train, args.max_length)
        clf.fit(
            train,
            train["gt_label"].to_numpy(float),
            val,
            val["gt_label"].to_numpy(),
            TrainParams.from_dict(hp),
            Strategy(),
            torch.device(device),
            seed,
        )
        correct[role] = (clf.predict_proba(parts["test"]) >= 0.5) == y
        out |= {role: round(float(correct[role].mean()), 4), f"{role}_s": round(time.monotonic() - start)}
    diff = correct["ceiling"].astype(float) - correct["weak"].astype(float)
    rng = np.random.default_rng(0)
    boots = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(1000)]
    return out | {
        "gap": round(float(diff.mean()), 4),
        "ci": [round(float(q), 4) for q in np.quantile(boots, [0.025, 0.975])],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name, default in (
        ("weak-train", 1500),
        ("weak-label", 2000),
        ("val", 300),
        ("test", 1500),
        ("epochs", 2),
        ("max-length", 128),
        ("threads", 2),
    ):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seeds", default="0")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    for seed in args.seeds.split(","):
        print(json.dumps(gap_run(cfg, args, int(seed))), flush=True)


if __name__ == "__main__":
    main()
