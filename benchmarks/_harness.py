"""What every benchmark shares: result rows and the Markdown report, timing, the machine and other
processes on it, the config -> spec helpers, and workflow copies (through tests/helpers.py).

Each benchmark module (b1_training.py ... b6_profile.py) has one `run(args, cfg) -> Section`; run.py
is the entry point."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the workflow helpers the tests use

from helpers import copy_repo, executed_rules, pending_jobs, snakemake  # noqa: E402

__all__ = [
    "REPO",
    "copy_repo",
    "executed_rules",
    "pending_jobs",
    "snakemake",
]  # re-exported for the benchmarks

HEAVY = re.compile(r"\b(snakemake|pytest)\b")


# --- results ------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the results table: a measured ratio against its goal."""

    bench: str
    what: str
    measured: str  # the numerator, with its absolute value
    baseline: str  # the denominator, with its absolute value
    ratio: float
    goal: str = ""  # ">= 0.9", "<= 0.25" or "" (reported only)
    also: bool = True  # a second condition of the goal (e.g. max abs diff < 1e-4)

    @property
    def verdict(self) -> str:
        if not self.goal or not math.isfinite(self.ratio):
            return "—"
        op, value = self.goal.split()[:2]
        ok = self.ratio >= float(value) if op == ">=" else self.ratio <= float(value)
        return "yes" if ok and self.also else "**no**"


@dataclass
class Section:
    """What one benchmark returns: table rows, details (Markdown lines) and its wall time."""

    title: str
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0
    contention: list[str] = field(default_factory=list)


def fmt_ratio(x: float) -> str:
    return "n/a" if not math.isfinite(x) else (f"{x:.1f}x" if x >= 10 else f"{x:.3g}")


def table(rows: list[Row]) -> str:
    lines = ["| # | benchmark | measured | baseline | ratio | goal | met |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r.bench} | {r.what} | {r.measured} | {r.baseline} | {fmt_ratio(r.ratio)} | "
            f"{r.goal or '—'} | {r.verdict} |"
        )
    return "\n".join(lines)


def report(args, sections: list[Section], started, seconds: float, argv: list[str]) -> str:
    """The Markdown of benchmarks/results.md: run facts, the table of every row, then each section."""
    command = " ".join(["python", "benchmarks/run.py", *map(shlex.quote, argv)])
    rows = [r for s in sections for r in s.rows]
    lines = [
        "# w2s-align benchmarks",
        "",
        f"- command: `{command}`" + (" (quick mode: small sizes, not for comparison)" if args.quick else ""),
        f"- date: {started:%Y-%m-%d %H:%M} UTC, total {seconds / 60:.1f} min",
        f"- machine: {machine_line(args.threads)}",
        f"- threads: torch.set_num_threads({args.threads}); snakemake --cores {args.cores}; "
        f"load average at start {os.getloadavg()[0]:.2f}",
    ]
    contention = [f"  - benchmark {s.title.split('.')[0]}: {c}" for s in sections for c in s.contention]
    lines.append(
        "- other snakemake/pytest processes (sampled every 5 s): "
        + (
            "**the CPU was shared while measuring; treat the ratios with care**"
            if contention
            else "none seen"
        )
    )
    lines += contention
    lines += [
        "",
        "Every figure is a ratio of two measurements taken in this run on this machine "
        "(ratio = measured / baseline; for reruns, a fraction of the full run; for dry runs, time / goal).",
        "",
        table(rows),
        "",
    ]
    for s in sections:
        lines += [f"## {s.title}", "", f"({s.seconds:.0f} s)", "", *s.details, ""]
    return "\n".join(lines)


# --- timing ---------------------------------------------------------------------------------------


@dataclass
class Timing:
    """Wall seconds and this process's CPU seconds (all threads) of a timed block. CPU time hardly
    changes when other processes share the cores, so its ratio is a cross-check of the wall-time ratio."""

    wall: float = 0.0
    cpu: float = 0.0


@contextlib.contextmanager
def stopwatch():
    timing, wall, cpu = Timing(), time.perf_counter(), time.process_time()
    yield timing
    timing.wall, timing.cpu = time.perf_counter() - wall, time.process_time() - cpu


def quiet():
    """Silence tqdm bars and library warnings on the console (the pipeline writes them to logs)."""
    return contextlib.redirect_stderr(io.StringIO())


# --- machine and other processes ---------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine_line(threads: int) -> str:
    import torch
    import transformers

    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    return (
        f"{available_cores()} cores ({cpu_model()}){mem}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, torch {torch.__version__} ({threads} threads), "
        f"transformers {transformers.__version__}, snakemake {package_version('snakemake')}"
    )


def package_version(name: str) -> str:
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        return version(name)
    return "?"


def own_pids() -> set[int]:
    """This process and its descendants (the snakemake runs the benchmarks start)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    mine, todo = set(), [os.getpid()]
    while todo:
        pid = todo.pop()
        mine.add(pid)
        todo += children.get(pid, [])
    return mine


def other_heavy_processes() -> list[str]:
    """snakemake / pytest processes that this script did not start (they would share the CPU)."""
    mine, found = own_pids(), []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(cmdline.parent.name)
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            if pid not in mine and HEAVY.search(args) and "benchmarks/run.py" not in args:
                found.append(f"pid {pid}: {args[:120]}")
    return found


class ContentionMonitor:
    """Samples other snakemake/pytest processes and the load average every few seconds in the background."""

    def __init__(self, every: float = 5.0):
        self.every, self.stop = every, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.reset()

    def reset(self) -> None:
        self.samples, self.busy, self.seen, self.max_load = 0, 0, [], 0.0

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            found = other_heavy_processes()
            self.samples += 1
            self.busy += bool(found)
            self.seen += [f for f in found if f not in self.seen]
            self.max_load = max(self.max_load, os.getloadavg()[0])

    def summary(self) -> list[str]:
        if not self.busy:
            return []
        more = f" (+{len(self.seen) - 3} more)" if len(self.seen) > 3 else ""
        examples = "; ".join(f"`{x}`" for x in self.seen[:3]) + more
        return [
            f"present in {self.busy} of {self.samples} samples, max 1-min load {self.max_load:.1f}: "
            f"{examples}"
        ]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


# --- the config, read as the workflow reads it ----------------------------------------------------------


def load_config(path: Path = REPO / "config.yaml") -> dict:
    return yaml.safe_load(path.read_text())


def model_spec(cfg: dict, name: str):
    """The model's ModelSpec exactly as its jobs get it (w2s_align.settings.settings.model_spec: no
    train/resources)."""
    from w2s_align.settings.settings import Settings
    from w2s_align.settings.settings import model_spec as canonical_spec
    from w2s_align.settings.specs import ModelSpec

    return ModelSpec.from_json(canonical_spec(Settings.from_config(cfg), name))


def train_params(cfg: dict, name: str, role: str = "ceiling", **overrides):
    """The model's TrainParams in `role` (weak, ceiling or student), with `overrides` (e.g. epochs=1)."""
    from w2s_align.settings.settings import Settings

    return dataclasses.replace(Settings.from_config(cfg).hparams(name, role), **overrides)


def task_splits(cfg: dict, task: str, seed: int = 0) -> dict:
    """The pipeline's clean + split of a classification task (paths resolved against the repository)."""
    from w2s_align.data.classification import clean, split
    from w2s_align.data.sources import load_source
    from w2s_align.settings.specs import TaskData

    block = dict(cfg["tasks"][task]["data"])
    block["source"] = str(REPO / block["source"])
    spec = TaskData.from_dict(block)
    return split(clean(load_source(spec.source, spec.hf_split), spec), spec, seed)


# --- workflow copies -----------------------------------------------------------------------------------


def copy_workflow(dest: Path, config: Path = REPO / "config.yaml") -> Path:
    """tests/helpers.copy_repo (the workflow files, no results, venv or git) plus configs/, with `config`
    as config.yaml."""
    copy_repo(dest, config)
    shutil.copytree(REPO / "configs", dest / "configs")
    return dest


def timed_snakemake(
    workdir: Path, *args: str, timeout: int = 7200, check: bool = True
) -> tuple[float, subprocess.CompletedProcess]:
    """tests/helpers.snakemake (offline, PYTHONPATH = the copy's src, no SLURM probe), timed."""
    start = time.perf_counter()
    proc = snakemake(workdir, *args, check=check, timeout=timeout)
    return time.perf_counter() - start, proc


def rule_counts(proc: subprocess.CompletedProcess) -> Counter:
    """Rule name -> number of jobs that a real run executed."""
    return Counter(executed_rules(proc))


def pending_count(workdir: Path, *args: str) -> int:
    return sum(len(reasons) for reasons in pending_jobs(workdir, *args).values())


def jobs_text(jobs: Counter | dict) -> str:
    return ", ".join(f"{k}×{v}" if v > 1 else k for k, v in sorted(jobs.items())) or "(none)"
