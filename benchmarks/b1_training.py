"""Benchmark 1: training throughput of the pipeline's loop (`w2s_align.train.loop.fit`, driven by
`TransformerClassifier.fit` as the train_* jobs drive it) vs a bare PyTorch loop over the same batches.

The bare loop and its batches are shared with benchmark 6 (`bare_epoch`, `collated_batches`)."""

from __future__ import annotations

import contextlib
import copy
import time

import numpy as np

from _harness import Row, Section, Timing, model_spec, quiet, stopwatch, task_splits, train_params

MODELS = ("minilm-l6", "gpt2-scratch")


class _TimedBar:
    """Wraps the loop's per-epoch tqdm bar (driven by `update()` and `close()`); records the time from the
    bar's creation to its `close()`, i.e. the epoch's optimisation steps, not its validation."""

    def __init__(self, bar, sink: list[Timing]):
        self.bar, self.sink = bar, sink
        self.clock = contextlib.ExitStack()
        self.timing = self.clock.enter_context(stopwatch())

    def close(self):
        self.clock.close()
        self.sink.append(self.timing)
        self.bar.close()

    def __getattr__(self, name):
        return getattr(self.bar, name)


@contextlib.contextmanager
def timed_training_epochs(sink: list[Timing]):
    """Patch w2s_align.train.loop's tqdm so that its `epoch i/n` loops report their time to `sink`;
    validation (the classifier's own `validate` bar) and the best-epoch snapshot are left out."""
    import w2s_align.train.loop as loop

    real = loop.tqdm

    def factory(iterable=None, *args, **kwargs):
        bar = real(iterable, *args, **kwargs)
        return _TimedBar(bar, sink) if str(kwargs.get("desc", "")).startswith("epoch") else bar

    loop.tqdm = factory
    try:
        yield
    finally:
        loop.tqdm = real


def pipeline_epoch(clf, init_state, rows, val, hp, device, seed) -> tuple[Timing, float, float]:
    """TransformerClassifier.fit (ground-truth targets, the naive strategy) for one epoch from
    `init_state`: (optimisation Timing, total seconds of the call, mean training loss)."""
    from w2s_align.device import set_seed
    from w2s_align.settings.specs import Strategy

    clf.model.load_state_dict(init_state)
    set_seed(seed)
    sink: list[Timing] = []
    start = time.perf_counter()
    with timed_training_epochs(sink), quiet():
        info = clf.fit(
            rows,
            rows["gt_label"].to_numpy(dtype=np.float64),
            val,
            val["gt_label"].to_numpy(),
            hp,
            Strategy(),
            device,
            seed,
        )
    return sink[0], time.perf_counter() - start, info["history"][0]["train_loss"]


def bare_epoch(model, init_state, batches, hp, device, seed, fused: bool = True, compute=None):
    """A hand-written PyTorch loop over pre-collated batches: AdamW (fused, as in the pipeline, or
    torch's CPU default that updates one tensor at a time) + the same linear schedule, cross-entropy under
    the pipeline's autocast dtype `compute` (None: fp32), backward, clip, step. (Timing, mean loss, wall
    seconds inside optimizer.step)."""
    import torch
    import torch.nn.functional as F
    from transformers import get_linear_schedule_with_warmup

    from w2s_align.device import autocast, set_seed

    model.load_state_dict(init_state)
    set_seed(seed)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay, fused=fused)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(hp.warmup_ratio * len(batches)), len(batches))
    losses, in_step = [], 0.0
    with stopwatch() as timing:
        for inputs, labels in batches:
            with autocast(device, compute or torch.float32):
                loss = F.cross_entropy(model(**inputs).logits, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
            start = time.perf_counter()
            optimizer.step()
            in_step += time.perf_counter() - start
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
    return timing, float(torch.stack(losses).mean()), in_step


def collated_batches(
    feats: list[dict], labels: np.ndarray, tokenizer, batch_size: int, device, seed: int
) -> list:
    """The batches of the loop's first epoch (`length_grouped_batches` with a fresh rng of `seed`, as in
    `fit`), collated beforehand (outside any timer)."""
    import torch
    from transformers import DataCollatorWithPadding

    from w2s_align.train.loop import length_grouped_batches

    collate = DataCollatorWithPadding(tokenizer)
    order = length_grouped_batches(
        [len(f["input_ids"]) for f in feats], batch_size, np.random.default_rng(seed)
    )
    return [
        (collate([feats[i] for i in idx]).to(device), torch.tensor(labels[idx]).to(device)) for idx in order
    ]


def build_classifier(cfg: dict, name: str, train_df, max_length: int):
    """A fresh TransformerClassifier as the training jobs build it (scratch tokenizers on `train_df`)."""
    from w2s_align.models.classifier import TransformerClassifier

    with quiet():
        return TransformerClassifier.build(model_spec(cfg, name), train_df, max_length)


def run(args, cfg: dict) -> Section:
    import torch

    from w2s_align.device import setup_torch

    sec = Section("1. Training throughput: pipeline loop vs bare PyTorch loop")
    task, seed = "safety", 0
    max_length = cfg["tasks"][task]["max_length"]
    splits = task_splits(cfg, task, seed)
    with quiet():
        device = setup_torch(args.threads, seed)  # threads + deterministic algorithms, for both loops
    sec.details.append(
        f"Data: {task} weak_train rows (default config split, seed {seed}), max_length {max_length}, "
        f"ground-truth targets, 1 epoch, device {device}, {torch.get_num_threads()} threads. "
        f"Pipeline = `TransformerClassifier.fit` (naive strategy) running `w2s_align.train.loop.fit`, "
        f"timed over its training-batch loop only (validation on 4 rows and the best-epoch snapshot "
        f"excluded; total call time shown too). Bare = the same batches (same "
        f"`length_grouped_batches` order, the same features from `TransformerClassifier.encode`, "
        f"collated beforehand, outside the timer), `F.cross_entropy` under the same autocast "
        f"dtype, fused AdamW + linear warmup/decay, clip 1.0. Order alternates pipeline/bare (PB, BP, "
        f"PB, ...) after one warm-up, "
        f"{', '.join(f'{k}: {v}' for k, v in args.train_repeats.items())} runs of each; best of each."
    )
    sec.details += [
        "",
        "| model | batch | steps | pipeline s (total call s) | bare s | CPU-time ratio (best) "
        "| mean loss pipeline / bare |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in MODELS:
        hp = train_params(cfg, name, epochs=1)
        steps = args.train_steps[name]
        rows = splits["weak_train"].iloc[: steps * hp.batch_size].reset_index(drop=True)
        val = splits["val"].iloc[:4].reset_index(drop=True)
        clf = build_classifier(cfg, name, splits["weak_train"], max_length)
        feats = clf.encode(rows)
        init_state = copy.deepcopy(clf.model.state_dict())
        batches = collated_batches(
            feats, rows["gt_label"].to_numpy(), clf.tokenizer, hp.batch_size, device, seed
        )
        n = len(batches)
        bare_epoch(clf.model, init_state, batches[:3], hp, device, seed, compute=clf.compute)  # warm-up
        pipe, bare, pipe_total, losses = [], [], [], {}
        for r in range(args.train_repeats[name]):
            for which in ("pipeline", "bare") if r % 2 == 0 else ("bare", "pipeline"):
                if which == "pipeline":
                    timing, total, losses["pipeline"] = pipeline_epoch(
                        clf, init_state, rows, val, hp, device, seed
                    )
                    pipe.append(timing)
                    pipe_total.append(total)
                else:
                    timing, losses["bare"], _ = bare_epoch(
                        clf.model, init_state, batches, hp, device, seed, compute=clf.compute
                    )
                    bare.append(timing)
        p, b = min(t.wall for t in pipe), min(t.wall for t in bare)
        cpu_ratio = min(t.cpu for t in bare) / min(t.cpu for t in pipe)
        sec.rows.append(
            Row(
                "1",
                f"training steps/s, {name} ({n} steps × {hp.batch_size})",
                f"pipeline {n / p:.2f} steps/s ({p:.1f} s)",
                f"bare {n / b:.2f} steps/s ({b:.1f} s)",
                b / p,
                ">= 0.9",
            )
        )
        sec.details.append(
            f"| {name} | {hp.batch_size} | {n} | {', '.join(f'{t.wall:.2f}' for t in pipe)} "
            f"({', '.join(f'{x:.2f}' for x in pipe_total)}) | "
            f"{', '.join(f'{t.wall:.2f}' for t in bare)} | {cpu_ratio:.3f} | "
            f"{losses['pipeline']:.5f} / {losses['bare']:.5f} |"
        )
        del clf, batches
    sec.details += [
        "",
        "Equal mean losses show both loops do the same computation (same batches, init and dropout seed).",
    ]
    return sec
