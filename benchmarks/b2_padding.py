"""Benchmark 2: padded tokens per epoch with the pipeline's batching (dynamic padding,
`length_grouped_batches`, truncation at max_length) vs padding every row to 512, and the same predictions
either way (trained checkpoints from results/ when a pipeline run left them there)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from b1_training import build_classifier

from _harness import REPO, Row, Section, quiet, task_splits

FULL = 512  # the original recipe pads every row to this
CHECKPOINTS = (("minilm-l6", "ceiling/minilm-l6"), ("gpt2-scratch", "weak/gpt2-scratch"))


def padded_tokens(lengths: list[int], batch_size: int, seed: int) -> int:
    from w2s_align.train.loop import length_grouped_batches

    batches = length_grouped_batches(lengths, batch_size, np.random.default_rng(seed))
    return int(sum(len(b) * max(lengths[i] for i in b) for b in batches))


def padding_predictions(
    clf, feats: list[dict], pad_to: int, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """P(class 1) with the pipeline's dynamic padding (`predict_features`) and with every row padded to
    `pad_to`."""
    import torch

    with quiet():
        dynamic = clf.predict_features(feats, batch_size)
    fixed = np.empty(len(feats))
    model = clf.model.to("cpu").eval()
    with torch.inference_mode():
        for start in range(0, len(feats), batch_size):
            batch = clf.tokenizer.pad(
                feats[start : start + batch_size],
                padding="max_length",
                max_length=pad_to,
                return_tensors="pt",
            )
            fixed[start : start + batch_size] = torch.softmax(model(**batch).logits.float(), -1)[:, 1].numpy()
    return dynamic, fixed


def load_checkpoint_or_build(folder: Path, cfg: dict, name: str, train_df, max_length: int):
    """A trained classifier from the main checkout's results/ when there is one, else a fresh model."""
    from w2s_align.models.classifier import TransformerClassifier
    from w2s_align.models.common import read_meta

    weights, meta = folder / "classifier.safetensors", folder / "classifier.json"
    if weights.exists() and meta.exists():
        with quiet():
            clf = TransformerClassifier.load(str(weights), read_meta(str(meta)), "cpu")
        return clf, f"trained checkpoint {folder.relative_to(REPO)}"
    clf = build_classifier(cfg, name, train_df, max_length)
    clf.model.eval()
    return clf, "untrained model (no checkpoint in results/; run the pipeline first)"


def run(args, cfg: dict) -> Section:
    import torch

    from w2s_align.models.classifier import TransformerClassifier

    sec = Section("2. Tokens per epoch: dynamic padding + length-grouped batches vs padding to 512")
    torch.set_num_threads(args.threads)
    sec.details.append(
        "Rows: the weak_label split of the default config (seed 0), tokenised as the pipeline does "
        "(`TransformerClassifier.encode`: truncation at the task's max_length). Padded tokens = Σ over "
        "batches of batch size × longest row (`length_grouped_batches`, seed 0); the original recipe "
        "pads every row to 512. The pipeline's truncation at max_length is a separate saving (shown)."
    )
    sec.details += [
        "",
        "| task | model (batch) | rows | max_length | rows truncated | real tokens | pipeline padded "
        "| pad to max_length | pad to 512 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    checks = []
    for task in ("safety", "legal"):
        max_length = cfg["tasks"][task]["max_length"]
        splits = task_splits(cfg, task)
        rows = splits["weak_label"]
        for name in ("minilm-l6", "gpt2-scratch"):
            batch_size = cfg["models"][name]["train"]["batch_size"]
            clf = build_classifier(cfg, name, splits["weak_train"], max_length)
            untruncated = TransformerClassifier(clf.model, clf.tokenizer, 100_000).encode(rows)
            lengths = [len(f["input_ids"]) for f in clf.encode(rows)]
            n, dynamic = len(lengths), padded_tokens(lengths, batch_size, 0)
            truncated = sum(len(f["input_ids"]) > max_length for f in untruncated)
            sec.details.append(
                f"| {task} | {name} ({batch_size}) | {n} | {max_length} | {truncated} "
                f"({100 * truncated / n:.1f}%) | {sum(lengths):,} | {dynamic:,} | {n * max_length:,} | "
                f"{n * FULL:,} |"
            )
            sec.rows.append(
                Row(
                    "2",
                    f"padded tokens/epoch, {task}, {name} tokenizer (batch {batch_size})",
                    f"pipeline {dynamic:,}",
                    f"pad to 512: {n * FULL:,}",
                    dynamic / (n * FULL),
                    "<= 0.25",
                )
            )
        # equal accuracy: the same rows with dynamic padding and padded to the longest the model takes
        test = splits["test"].iloc[: args.padding_rows].reset_index(drop=True)
        for name, role in CHECKPOINTS:
            clf, origin = load_checkpoint_or_build(
                REPO / "results" / task / role / "seed0", cfg, name, splits["weak_train"], max_length
            )
            limit = getattr(clf.model.config, "max_position_embeddings", None) or clf.model.config.n_positions
            pad_to = min(FULL, limit)
            feats = clf.encode(test)
            dynamic_p, fixed_p = padding_predictions(clf, feats, pad_to, 64)
            agree = float(np.mean((dynamic_p >= 0.5) == (fixed_p >= 0.5)))
            diff = float(np.max(np.abs(dynamic_p - fixed_p)))
            checks.append(
                f"| {task} | {name} | {origin} | {len(feats)} | {pad_to} | {100 * agree:.1f}% | {diff:.2e} |"
            )
            sec.rows.append(
                Row(
                    "2",
                    f"same predictions with dynamic padding vs padded to {pad_to}, {task}, {name} "
                    f"({len(feats)} test rows)",
                    f"hard agreement {100 * agree:.1f}%",
                    f"max abs ΔP {diff:.1e}",
                    agree,
                    ">= 1.0 and ΔP < 1e-4",
                    also=diff < 1e-4,
                )
            )
            del clf
    sec.details += [
        "",
        "Predictions (P(class 1)) of the same test rows, dynamic padding (`predict_features`) vs "
        "every row padded to the model's limit (512 for MiniLM; the scratch GPT-2 has only "
        "max_length positions, so it is padded to that):",
        "",
        "| task | model | weights | rows | padded to | hard agreement | max abs diff |",
        "|---|---|---|---|---|---|---|",
        *checks,
    ]
    return sec
