"""Benchmark 5: incremental reruns after a finished run: (a) the strong model's lr, (b) a new strategy,
(c) the toxicity scorer. Each rerun is timed against the full run, and the rules of the jobs that ran
are checked against the stages the edit can affect."""

from __future__ import annotations

import contextlib
import copy
import math
import re
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from _harness import (
    REPO,
    Row,
    Section,
    copy_workflow,
    jobs_text,
    load_config,
    pending_count,
    rule_counts,
    timed_snakemake,
)

RUN_STATE = ("results", "logs", ".snakemake")  # what a snakemake run changes in the workflow copy
REPORT = {"summary", "plots", "all"}  # rerun whenever any metrics file changes
# the rules an edit may rerun (the training stage it changes and everything downstream of it)
EXPECTED = {
    "a": {"train_ceiling", "train_student", "predict", "metrics"} | REPORT,
    "b": {"train_student", "predict", "metrics"} | REPORT,
    "c": {"train_scorer", "score_generations", "toxicity_metrics"} | REPORT,
}


def config_changes(cfg: dict) -> list[tuple[str, str, callable]]:
    """(key, description, edit) for the three edits: strong-model lr, a new strategy, the scorer."""
    strong = next(m for m in cfg["strong_models"] if cfg["models"][m]["kind"] != "tfidf")
    lr = cfg["models"][strong].get("train", {}).get("lr", 1e-4)
    strategy = next(n for n in ("confident", "confident-50", "confident-half") if n not in cfg["strategies"])
    tox = next((t for t, v in cfg["tasks"].items() if v.get("kind") == "generation"), None)
    scorer = tox and cfg["tasks"][tox]["scorer"]
    other = tox and next(
        (s for s, v in cfg["scorers"].items() if s != scorer and v.get("kind") == "trained"), None
    )

    def lr_change(c):
        c["models"][strong].setdefault("train", {})["lr"] = lr / 2

    def new_strategy(c):
        c["strategies"][strategy] = {"top_fraction": 0.5}
        c["student_strategies"] = [*c["student_strategies"], strategy]

    def scorer_change(c):
        c["tasks"][tox]["scorer"] = other

    changes = [
        ("a", f"strong-model lr: `models.{strong}.train.lr` {lr:g} → {lr / 2:g}", lr_change),
        (
            "b",
            f"new strategy `{strategy}: {{top_fraction: 0.5}}` in `strategies` and `student_strategies`",
            new_strategy,
        ),
    ]
    if other:
        changes.append(("c", f"scorer: `tasks.{tox}.scorer` {scorer} → {other}", scorer_change))
    return changes


def failure_reason(log: str) -> str:
    """The pipeline's own error line (w2s_align ERROR ...) or snakemake's last error line."""
    errors = re.findall(r"ERROR w2s_align\S*: (.*)", log) or re.findall(
        r"^(Error in rule \w+):", log, flags=re.M
    )
    return errors[-1].strip() if errors else "snakemake failed (see its log)"


def copy_state(src: Path, dest: Path) -> None:
    """Replace dest's run state by src's (copy2 keeps modification times, which snakemake compares)."""
    for name in RUN_STATE:
        shutil.rmtree(dest / name, ignore_errors=True)
        if (src / name).exists():
            shutil.copytree(src / name, dest / name, symlinks=True)


def job_seconds(workdir: Path) -> dict[str, float]:
    """Wall seconds of every job with a `benchmark:` file (results/benchmarks/...tsv) in `workdir`."""
    root = workdir / "results" / "benchmarks"
    return {
        str(p.relative_to(root).with_suffix("")): float(p.read_text().splitlines()[1].split("\t")[0])
        for p in sorted(root.rglob("*.tsv"))
    }


def timed_edit(workdir: Path, snapshot: Path, original: str, changed: dict, cores: str) -> dict:
    """Run with the edited config (timed), then put back the original config and the finished state
    saved in `snapshot`; a dry run checks that nothing is pending."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
    seconds, proc = timed_snakemake(workdir, "--cores", cores, check=False)
    log, ok = proc.stdout + proc.stderr, proc.returncode == 0
    (workdir / "config.yaml").write_text(original)
    start = time.perf_counter()
    copy_state(snapshot, workdir)
    restore = time.perf_counter() - start
    return {
        "seconds": seconds,
        "jobs": rule_counts(proc),
        "ok": ok,
        "error": "" if ok else failure_reason(log),
        "restore": restore,
        "pending": pending_count(workdir),
    }


def run(args, cfg: dict) -> Section:
    config_path = (REPO / args.rerun_config).resolve()
    name = config_path.relative_to(REPO)
    run_cfg = load_config(config_path)
    cores = str(args.cores)
    sec = Section(f"5. Incremental reruns after a finished run ({name})")
    keep = tempfile.mkdtemp(prefix="w2s-bench-rerun-") if args.keep else None
    with contextlib.ExitStack() as stack:
        tmp = keep or stack.enter_context(tempfile.TemporaryDirectory(prefix="w2s-bench-rerun-"))
        workdir = copy_workflow(Path(tmp) / "workflow", config_path)
        original = (workdir / "config.yaml").read_text()
        full, proc = timed_snakemake(workdir, "--cores", cores)
        full_jobs = rule_counts(proc)
        args.job_seconds = (job_seconds(workdir), f"benchmark 5's full run of `{name}`")
        snapshot = Path(tmp) / "finished"
        copy_state(workdir, snapshot)
        sec.details.append(
            f"Copy of the workflow (`tests/helpers.copy_repo` + `configs/`) in "
            f"{'`' + tmp + '` (kept)' if keep else 'a temporary folder'} with `{name}` as config.yaml, "
            f"PYTHONPATH = the copy's src. Full run `snakemake --cores {cores}`: {full:.1f} s, "
            f"{sum(full_jobs.values())} jobs ({jobs_text(full_jobs)}). Its finished state "
            f"({', '.join(RUN_STATE)}) is copied aside with modification times. Each edit: change "
            f"config.yaml, `snakemake --cores {cores}` (timed), then put the original config.yaml and "
            f"the finished state back; a dry run then checks that nothing is pending. Expected: the "
            f"rules an edit may rerun (its training stage and what is downstream of it)."
        )
        sec.details += [
            "",
            "| edit | wall s | fraction of full run | jobs that ran | only expected rules | state restored |",
            "|---|---|---|---|---|---|",
        ]
        for key, description, edit in config_changes(run_cfg):
            changed = copy.deepcopy(run_cfg)
            edit(changed)
            r = timed_edit(workdir, snapshot, original, changed, cores)
            status = "" if r["ok"] else f" — **failed**: {r['error']}"
            pending = f"**{r['pending']} jobs still pending**" if r["pending"] else "nothing pending"
            unexpected = sorted(set(r["jobs"]) - EXPECTED[key])
            scope = f"**no**: {', '.join(unexpected)}" if unexpected else "yes"
            sec.details.append(
                f"| ({key}) {description} | {r['seconds']:.1f} | {r['seconds'] / full:.3f} | "
                f"{jobs_text(r['jobs'])}{status} | {scope} | {r['restore']:.1f} s; {pending} |"
            )
            n_jobs = sum(r["jobs"].values())
            sec.rows.append(
                Row(
                    "5",
                    f"rerun ({key}) {description.split(':')[0].replace('`', '')}: {n_jobs} jobs"
                    + ("" if r["ok"] else " — **failed**, see details")
                    + (f" — **unexpected**: {', '.join(unexpected)}" if unexpected else ""),
                    f"{r['seconds']:.1f} s",
                    f"full run {full:.1f} s",
                    r["seconds"] / full if r["ok"] else math.nan,
                )
            )
    return sec
