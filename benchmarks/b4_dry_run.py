"""Benchmark 4: `snakemake -n` of the paper-scale grid and of the default config in a fresh copy of the
workflow (nothing built, so the whole DAG is pending)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _harness import Row, Section, copy_workflow, jobs_text, pending_jobs

CONFIGS = {  # label -> (extra snakemake arguments, goal in seconds)
    "paper-scale (`--configfile configs/paper.yaml`)": (["--configfile", "configs/paper.yaml"], 10.0),
    "default (`config.yaml`)": ([], 3.0),
}


def run(args, cfg: dict) -> Section:
    sec = Section("4. Dry-run time of the DAG")
    with tempfile.TemporaryDirectory(prefix="w2s-bench-dry-") as tmp:
        workdir = copy_workflow(Path(tmp))
        sec.details.append(
            f"`snakemake -n` (`tests/helpers.pending_jobs`: offline, no SLURM probe) in a fresh copy "
            f"of the workflow files (nothing built, so the whole DAG is pending), best of "
            f"{args.dry_runs}."
        )
        sec.details += ["", "| config | jobs | runs (s) |", "|---|---|---|"]
        per_rule = []
        for label, (extra, goal) in CONFIGS.items():
            times, jobs = [], {}
            for _ in range(args.dry_runs):
                start = time.perf_counter()
                jobs = pending_jobs(workdir, *extra)
                times.append(time.perf_counter() - start)
            n = sum(len(reasons) for reasons in jobs.values())
            best = min(times)
            sec.details.append(f"| {label} | {n} | {', '.join(f'{t:.2f}' for t in times)} |")
            per_rule.append(f"- {label}: {jobs_text({rule: len(r) for rule, r in jobs.items()})}")
            sec.rows.append(
                Row(
                    "4",
                    f"dry run, {label}: {n} jobs",
                    f"best {best:.2f} s",
                    f"goal {goal:g} s",
                    best / goal,
                    "<= 1",
                )
            )
        sec.details += ["", "Jobs per rule:", *per_rule]
    return sec
