#!/usr/bin/env python
"""Side-by-side benchmarks of w2s-align against the project's performance goals.

    python benchmarks/run.py                  # everything (~36-40 min on 2 CPU cores: 5 runs the default
    pipeline) python benchmarks/run.py --quick          # fewer steps and prompts, tiny config for 5 (~10 min)
    python benchmarks/run.py --only 2,4       # a subset

Every figure is a ratio measured in the same run on the same machine (absolute times beside it).
The table is printed and written to benchmarks/results.md (see benchmarks/README.md). One module per
benchmark (b1_training.py ... b7_dpo.py), the shared parts in _harness.py.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import traceback
from pathlib import Path

import b1_training
import b2_padding
import b3_generation
import b4_dry_run
import b5_reruns
import b6_profile
import b7_dpo

from _harness import REPO, ContentionMonitor, Section, available_cores, load_config, report, table

BENCHMARKS = {
    1: b1_training.run,
    2: b2_padding.run,
    3: b3_generation.run,
    4: b4_dry_run.run,
    5: b5_reruns.run,
    6: b6_profile.run,
    7: b7_dpo.run,
}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--only",
        default=",".join(map(str, BENCHMARKS)),
        help="comma-separated benchmark numbers (default: all)",
    )
    ap.add_argument(
        "--quick", action="store_true", help="fewer steps and prompts, one dry run (minutes, for trying out)"
    )
    ap.add_argument(
        "--threads", type=int, default=available_cores(), help="torch threads (default: all cores)"
    )
    ap.add_argument("--cores", type=int, default=available_cores(), help="snakemake --cores for benchmark 5")
    ap.add_argument(
        "--rerun-config",
        help="config for benchmark 5, relative to the repo (default: config.yaml, "
        "the ~21 min default run; with --quick: tests/configs/tiny.yaml)",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        help="alternating pipeline/bare runs per model in benchmark 1 "
        "(default: 3 for MiniLM, 6 for the scratch GPT-2; best of each)",
    )
    ap.add_argument("--keep", action="store_true", help="keep benchmark 5's finished workflow copy")
    ap.add_argument(
        "--output", default=str(REPO / "benchmarks" / "results.md"), help="Markdown file to write"
    )
    args = ap.parse_args(argv)
    args.only = sorted({int(x) for x in args.only.split(",") if x.strip()})
    if bad := [x for x in args.only if x not in BENCHMARKS]:
        ap.error(f"--only: unknown benchmark(s) {bad}; choose from {sorted(BENCHMARKS)}")
    args.train_steps = (
        {"minilm-l6": 8, "gpt2-scratch": 8} if args.quick else {"minilm-l6": 40, "gpt2-scratch": 60}
    )
    args.train_repeats = {
        name: args.repeats or default for name, default in (("minilm-l6", 3), ("gpt2-scratch", 6))
    }
    args.padding_rows = 16 if args.quick else 64
    args.prompts, args.new_tokens, args.gen_samples = (8, 8, 2) if args.quick else (64, 20, 4)
    args.gen_batch = 32  # the previous default: 8 prompts x 4 samples per call
    args.gen_sizes = (4, 16, 64) if args.quick else (8, 32, 64, 128, 256)
    args.dry_runs = 1 if args.quick else 3
    args.rerun_config = args.rerun_config or ("tests/configs/tiny.yaml" if args.quick else "config.yaml")
    args.fix_steps, args.fix_repeats = (6, 1) if args.quick else (30, 2)
    args.dpo_steps, args.dpo_repeats = (3, 1) if args.quick else (12, 2)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    cfg = load_config()
    started, t0 = datetime.datetime.now(datetime.UTC), time.perf_counter()
    sections, failed = [], False
    with ContentionMonitor() as monitor:
        for number in args.only:
            print(f"[{time.perf_counter() - t0:7.1f} s] benchmark {number} ...", flush=True)
            monitor.reset()
            start = time.perf_counter()
            try:
                section = BENCHMARKS[number](args, cfg)
            except Exception as exc:  # report it and go on with the other benchmarks
                failed = True
                section = Section(
                    f"{number}. {BENCHMARKS[number].__module__} **failed**",
                    details=["```", traceback.format_exc()[-3000:], "```"],
                )
                print(f"benchmark {number} failed: {exc}", file=sys.stderr, flush=True)
            section.seconds = time.perf_counter() - start
            section.contention = monitor.summary()
            sections.append(section)
            print(table(section.rows), flush=True)
            text = report(args, sections, started, time.perf_counter() - t0, argv)
            Path(args.output).write_text(text, encoding="utf-8")  # partial results survive a crash
    print(f"\n{text}\nwritten to {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
