"""Benchmark 6: the slowest stage of the default run, profiled and fixed. Ranks the jobs of a finished run
(benchmark 5's, else results/ of this checkout) by their `benchmark:` files, then times the fix that
profiling the slowest one (MiniLM on legal) led to: training steps with fused AdamW (the pipeline's
`Optimisation`) vs torch's per-tensor CPU AdamW, same batches and init, alternating."""

from __future__ import annotations

import copy

from b1_training import bare_epoch, build_classifier, collated_batches
from b5_reruns import job_seconds

from _harness import REPO, Row, Section, quiet, task_splits, train_params


def run(args, cfg: dict) -> Section:
    import torch

    from w2s_align.device import setup_torch

    sec = Section("6. Slowest stage of the default run: profiled, fixed, gain")
    times, source = getattr(args, "job_seconds", None) or (job_seconds(REPO), "`results/` of this checkout")
    if times:
        slowest = sorted(times.items(), key=lambda kv: -kv[1])[:5]
        sec.details.append(
            f"Slowest jobs ({source}, from their `benchmark:` files): "
            + ", ".join(f"{job} {seconds:.0f} s" for job, seconds in slowest)
            + "."
        )
    else:
        sec.details.append(
            "No finished run found to rank jobs (run benchmark 5 with the default config, "
            "or the pipeline, first)."
        )
    sec.details += [
        "",
        "The profile (py-spy) and the fix are described in benchmarks/README.md (benchmark 6): "
        "AdamW ran torch's per-tensor CPU loop; the pipeline now uses `AdamW(fused=True)` "
        "(`w2s_align.train.loop.Optimisation`). Below, the same batches and init in one loop, only the "
        "optimizer differs.",
    ]
    task, name, seed = "legal", "minilm-l6", 0
    max_length = cfg["tasks"][task]["max_length"]
    splits = task_splits(cfg, task, seed)
    hp = train_params(cfg, name, epochs=1)
    with quiet():
        device = setup_torch(args.threads, seed)
    clf = build_classifier(cfg, name, splits["weak_label"], max_length)
    rows = splits["weak_label"].iloc[: args.fix_steps * hp.batch_size].reset_index(drop=True)
    batches = collated_batches(
        clf.encode(rows), rows["gt_label"].to_numpy(), clf.tokenizer, hp.batch_size, device, seed
    )
    init_state = copy.deepcopy(clf.model.state_dict())
    bare_epoch(clf.model, init_state, batches[:2], hp, device, seed, compute=clf.compute)  # warm-up
    runs = {True: [], False: []}
    for r in range(args.fix_repeats):
        for fused in (True, False) if r % 2 == 0 else (False, True):
            runs[fused].append(
                bare_epoch(clf.model, init_state, batches, hp, device, seed, fused=fused, compute=clf.compute)
            )
    sec.details += [
        "",
        f"{task} weak_label rows, {name}, batch {hp.batch_size}, max_length {max_length}, "
        f"{len(batches)} steps, {torch.get_num_threads()} threads, {args.fix_repeats} alternating "
        f"runs each (best shown):",
        "",
        "| AdamW | seconds (runs) | steps/s | time in optimizer.step | mean loss |",
        "|---|---|---|---|---|",
    ]
    best = {}
    for fused, label in ((False, "per-tensor (torch CPU default, before)"), (True, "fused (pipeline now)")):
        timing, loss, in_step = min(runs[fused], key=lambda x: x[0].wall)
        best[fused] = timing.wall
        sec.details.append(
            f"| {label} | {timing.wall:.2f} ({', '.join(f'{x[0].wall:.2f}' for x in runs[fused])}) | "
            f"{len(batches) / timing.wall:.2f} | {in_step:.2f} s ({in_step / timing.wall:.0%}) | "
            f"{loss:.5f} |"
        )
    sec.rows.append(
        Row(
            "6",
            f"training steps/s, {task} {name} (slowest stage), fused vs per-tensor AdamW",
            f"fused {len(batches) / best[True]:.2f} steps/s ({best[True]:.1f} s)",
            f"per-tensor {len(batches) / best[False]:.2f} steps/s ({best[False]:.1f} s)",
            best[False] / best[True],
        )
    )
    return sec
