#!/usr/bin/env python
"""Side-by-side benchmarks of w2s-align against the project's performance goals.

    python benchmarks/run.py                  # everything (~36-40 min on 2 CPU cores: 5 runs the default pipeline)
    python benchmarks/run.py --quick          # fewer steps and prompts, tiny config for 5 (~10 min)
    python benchmarks/run.py --only 2,4       # a subset

Every figure is a ratio measured in the same run on the same machine (absolute times beside it).
The table is printed and written to benchmarks/results.md (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import io
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
SHIMS = REPO / "tests" / "bin"  # a failing `scontrol`, so Snakemake skips its 10 s SLURM probe
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
WORKFLOW_FILES = ["Snakefile", "config.yaml", "configs", "workflow", "envs", "resources", "src", "tests/configs"]
MODEL_KEYS = ("train", "student")  # per-model training settings, not part of ModelSpec
HEAVY = re.compile(r"\b(snakemake|pytest)\b")


# --- results --------------------------------------------------------------------------------


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
        lines.append(f"| {r.bench} | {r.what} | {r.measured} | {r.baseline} | {fmt_ratio(r.ratio)} | "
                     f"{r.goal or '—'} | {r.verdict} |")
    return "\n".join(lines)


# --- machine and environment -----------------------------------------------------------------


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
    return (f"{available_cores()} cores ({cpu_model()}){mem}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, torch {torch.__version__} ({threads} threads), "
            f"transformers {transformers.__version__}, snakemake {snakemake_version()}")


def snakemake_version() -> str:
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        return version("snakemake")
    return "?"


def own_pids() -> set[int]:
    """This process and its descendants (the snakemake runs this script starts)."""
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
        examples = "; ".join(f"`{x}`" for x in self.seen[:3]) + (f" (+{len(self.seen) - 3} more)"
                                                                    if len(self.seen) > 3 else "")
        return [f"present in {self.busy} of {self.samples} samples, max 1-min load {self.max_load:.1f}: {examples}"]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def workflow_env(workdir: Path) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{SHIMS}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(workdir / "src")}


# --- shared helpers ----------------------------------------------------------------------------


def load_config(path: Path = REPO / "config.yaml") -> dict:
    return yaml.safe_load(path.read_text())


def model_spec(cfg: dict, name: str):
    from w2s_align.models import ModelSpec

    return ModelSpec(**{k: v for k, v in cfg["models"][name].items() if k not in MODEL_KEYS})


def train_params(cfg: dict, name: str, **overrides):
    from w2s_align.loop import TrainParams

    return TrainParams(**{**cfg["models"][name].get("train", {}), **overrides})


def task_splits(cfg: dict, task: str, seed: int = 0) -> dict:
    """The pipeline's clean + split of a classification task (paths resolved against the repository)."""
    from w2s_align.data import TaskData, clean, load_source, split

    block = dict(cfg["tasks"][task]["data"])
    block["source"] = str(REPO / block["source"])
    spec = TaskData(**block)
    return split(clean(load_source(spec), spec), spec, seed)


def quiet():
    """Silence tqdm bars and library warnings on the console (the pipeline writes them to logs)."""
    return contextlib.redirect_stderr(io.StringIO())


def copy_workflow(dest: Path, config: Path | None = None) -> Path:
    """The workflow files (no results, venv or git) in `dest`; `config` replaces config.yaml."""
    for name in WORKFLOW_FILES:
        src, out = REPO / name, dest / name
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, out, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, out)
    if config is not None:
        shutil.copy2(config, dest / "config.yaml")
    return dest


class SnakemakeFailed(RuntimeError):
    def __init__(self, message: str, seconds: float, log: str):
        super().__init__(message)
        self.seconds, self.log = seconds, log


def run_snakemake(workdir: Path, *args: str, timeout: int = 3600) -> tuple[float, str]:
    """Run snakemake in `workdir`; (wall seconds, stdout+stderr). Raises with the log tail on failure."""
    start = time.perf_counter()
    proc = subprocess.run([SNAKEMAKE, *args], cwd=workdir, env=workflow_env(workdir), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SnakemakeFailed(f"snakemake {' '.join(args)} failed in {workdir} ({proc.returncode}):\n"
                              f"{proc.stdout[-3000:]}", seconds, proc.stdout)
    return seconds, proc.stdout


def run_snakemake_checked(workdir: Path, *args: str, timeout: int = 3600) -> tuple[float, str, bool]:
    """Like run_snakemake, but a failing run returns (seconds, log, False) instead of raising."""
    try:
        seconds, log = run_snakemake(workdir, *args, timeout=timeout)
        return seconds, log, True
    except SnakemakeFailed as exc:
        return exc.seconds, exc.log, False


def executed_jobs(log: str) -> Counter:
    """Rule name -> number of jobs, from snakemake's `rule X:` / `localrule X:` lines."""
    return Counter(re.findall(r"^\s*(?:local)?rule (\w+):", log, flags=re.M))


def job_total(log: str) -> int:
    m = re.search(r"^total\s+(\d+)\s*$", log, flags=re.M)
    return int(m.group(1)) if m else 0


def jobs_text(jobs: Counter) -> str:
    return ", ".join(f"{k}×{v}" if v > 1 else k for k, v in sorted(jobs.items())) or "(none)"


# --- 1. training throughput ---------------------------------------------------------------------


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


class _TimedBar:
    """Wraps the pipeline's tqdm bar over the training batches; records the time of the whole
    iteration (first batch fetched to last optimizer step done), i.e. the optimisation steps only."""

    def __init__(self, bar, sink: list[Timing]):
        self.bar, self.sink = bar, sink

    def __iter__(self):
        with stopwatch() as timing:
            yield from self.bar
        self.sink.append(timing)

    def __len__(self):
        return len(self.bar)

    def __getattr__(self, name):
        return getattr(self.bar, name)


@contextlib.contextmanager
def timed_training_epochs(sink: list[Timing]):
    """Patch w2s_align.train's tqdm so that its `epoch i/n` loops report their time to `sink`;
    the validation pass (`validate` bar) and the checkpoint copy are left out."""
    import w2s_align.train as train

    real = train.tqdm

    def factory(iterable=None, *args, **kwargs):
        bar = real(iterable, *args, **kwargs)
        return _TimedBar(bar, sink) if str(kwargs.get("desc", "")).startswith("epoch") else bar

    train.tqdm = factory
    try:
        yield
    finally:
        train.tqdm = real


def pipeline_epoch(model, init_state, tokenizer, feats, targets, val_feats, val_ref, hp, device, seed):
    """fit_transformer for one epoch from `init_state`: (optimisation Timing, total seconds, mean loss)."""
    from w2s_align.loop import set_seed
    from w2s_align.train import fit_transformer

    model.load_state_dict(init_state)
    set_seed(seed)
    sink: list[Timing] = []
    start = time.perf_counter()
    with timed_training_epochs(sink), quiet():
        _, info = fit_transformer(model, tokenizer, feats, targets, val_feats, val_ref, hp, device, seed)
    return sink[0], time.perf_counter() - start, info["history"][0]["train_loss"]


def bare_epoch(model, init_state, batches, hp, device, seed, fused: bool = True):
    """A hand-written PyTorch loop over pre-collated batches: AdamW (fused, as in the pipeline, or
    torch's CPU default that updates one tensor at a time) + the same linear schedule, cross-entropy,
    backward, clip, step. (Timing, mean loss, wall seconds inside optimizer.step)."""
    import torch
    import torch.nn.functional as F
    from transformers import get_linear_schedule_with_warmup

    from w2s_align.loop import set_seed

    model.load_state_dict(init_state)
    set_seed(seed)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay, fused=fused)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(hp.warmup_ratio * len(batches)), len(batches))
    losses, in_step = [], 0.0
    with stopwatch() as timing:
        for inputs, labels in batches:
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


def collated_batches(feats: list[dict], labels: np.ndarray, tokenizer, batch_size: int, device, seed: int) -> list:
    """The pipeline's length-grouped batch order, collated beforehand (outside any timer)."""
    import torch
    from transformers import DataCollatorWithPadding

    from w2s_align.loop import length_grouped_batches

    collate = DataCollatorWithPadding(tokenizer)
    order = length_grouped_batches([len(f["input_ids"]) for f in feats], batch_size, np.random.default_rng(seed))
    return [(collate([feats[i] for i in idx]).to(device), torch.tensor(labels[idx]).to(device)) for idx in order]


def bench_training(args, cfg: dict) -> Section:
    import torch

    from w2s_align.loop import setup_torch
    from w2s_align.models import build_transformer
    from w2s_align.train import as_targets, encode, joined_texts

    sec = Section("1. Training throughput: pipeline loop vs bare PyTorch loop")
    task, seed = "safety", 0
    max_length = cfg["tasks"][task]["max_length"]
    splits = task_splits(cfg, task, seed)
    with quiet():
        device = setup_torch(args.threads, seed)  # threads + deterministic algorithms, for both loops
    sec.details.append(f"Data: {task} weak_train rows (default config split, seed {seed}), max_length {max_length}, "
                       f"ground-truth targets, 1 epoch, device {device}, {torch.get_num_threads()} threads. "
                       f"Pipeline = `w2s_align.train.fit_transformer`, timed over its training-batch loop only "
                       f"(validation on 4 rows and the checkpoint copy excluded; total call time shown too). "
                       f"Bare = the same batches (same `length_grouped_batches` order, collated beforehand, "
                       f"outside the timer), `F.cross_entropy`, fused AdamW + linear warmup/decay, clip 1.0. "
                       f"Order alternates pipeline/bare (PB, BP, PB, ...) after one warm-up, "
                       f"{', '.join(f'{k}: {v}' for k, v in args.train_repeats.items())} runs of each; best of each.")
    sec.details.append("")
    sec.details.append("| model | batch | steps | pipeline s (total call s) | bare s | CPU-time ratio (best) "
                       "| mean loss pipeline / bare |")
    sec.details.append("|---|---|---|---|---|---|---|")
    for name in ("minilm-l6", "gpt2-scratch"):
        spec = model_spec(cfg, name)
        hp = train_params(cfg, name, epochs=1)
        steps = args.train_steps[name]
        rows = splits["weak_train"].iloc[:steps * hp.batch_size].reset_index(drop=True)
        val = splits["val"].iloc[:4].reset_index(drop=True)
        with quiet():
            model, tokenizer = build_transformer(spec, joined_texts(splits["weak_train"]), max_length)
        feats, val_feats = encode(tokenizer, rows, max_length), encode(tokenizer, val, max_length)
        labels = rows["gt_label"].to_numpy()
        targets = as_targets(labels.astype(np.float64), hard=False)
        init_state = copy.deepcopy(model.state_dict())
        batches = collated_batches(feats, labels, tokenizer, hp.batch_size, device, seed)
        n = len(batches)
        bare_epoch(model, init_state, batches[:3], hp, device, seed)  # warm-up
        pipe, bare, pipe_total, losses = [], [], [], {}
        for r in range(args.train_repeats[name]):
            for which in (("pipeline", "bare") if r % 2 == 0 else ("bare", "pipeline")):
                if which == "pipeline":
                    s, total, losses["pipeline"] = pipeline_epoch(
                        model, init_state, tokenizer, feats, targets, val_feats, val["gt_label"].to_numpy(), hp,
                        device, seed)
                    pipe.append(s)
                    pipe_total.append(total)
                else:
                    s, losses["bare"], _ = bare_epoch(model, init_state, batches, hp, device, seed)
                    bare.append(s)
        p, b = min(t.wall for t in pipe), min(t.wall for t in bare)
        cpu_ratio = min(t.cpu for t in bare) / min(t.cpu for t in pipe)
        sec.rows.append(Row("1", f"training steps/s, {name} ({n} steps × {hp.batch_size})",
                            f"pipeline {n / p:.2f} steps/s ({p:.1f} s)", f"bare {n / b:.2f} steps/s ({b:.1f} s)",
                            b / p, ">= 0.9"))
        sec.details.append(f"| {name} | {hp.batch_size} | {n} | {', '.join(f'{t.wall:.2f}' for t in pipe)} "
                           f"({', '.join(f'{x:.2f}' for x in pipe_total)}) | "
                           f"{', '.join(f'{t.wall:.2f}' for t in bare)} | {cpu_ratio:.3f} | "
                           f"{losses['pipeline']:.5f} / {losses['bare']:.5f} |")
        del model, batches
    sec.details.append("")
    sec.details.append("Equal mean losses show both loops do the same computation "
                       "(same batches, init and dropout seed).")
    return sec


# --- 2. padded tokens per epoch and predictions under padding ----------------------------------


def padded_tokens(lengths: list[int], batch_size: int, seed: int) -> int:
    from w2s_align.loop import length_grouped_batches

    batches = length_grouped_batches(lengths, batch_size, np.random.default_rng(seed))
    return int(sum(len(b) * max(lengths[i] for i in b) for b in batches))


def padding_predictions(model, tokenizer, feats: list[dict], pad_to: int,
                        batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """P(class 1) with the pipeline's dynamic padding (predict_proba) and with every row padded to `pad_to`."""
    import torch

    from w2s_align.train import predict_proba

    device = torch.device("cpu")
    with quiet():
        dynamic = predict_proba(model, tokenizer, feats, batch_size, device)
    fixed = np.empty(len(feats))
    with torch.inference_mode():
        for start in range(0, len(feats), batch_size):
            batch = tokenizer.pad(feats[start:start + batch_size], padding="max_length", max_length=pad_to,
                                  return_tensors="pt")
            fixed[start:start + batch_size] = torch.softmax(model(**batch).logits.float(), -1)[:, 1].numpy()
    return dynamic, fixed


def load_checkpoint_or_build(path: Path, cfg: dict, name: str, texts: list[str], max_length: int):
    """A trained classifier from the main repo's results when there is one, else a fresh model."""
    from w2s_align.models import build_transformer, load_transformer, read_meta

    if (path / "model.safetensors").exists():
        with quiet():
            model, tokenizer = load_transformer(str(path / "model.safetensors"), read_meta(str(path / "model.json")))
        return model, tokenizer, f"trained checkpoint {path.relative_to(REPO)}"
    with quiet():
        model, tokenizer = build_transformer(model_spec(cfg, name), texts, max_length)
    return model.eval(), tokenizer, "untrained model (no checkpoint in results/; run the pipeline first)"


def bench_padding(args, cfg: dict) -> Section:
    import torch

    from w2s_align.models import build_transformer
    from w2s_align.train import encode, joined_texts

    sec = Section("2. Tokens per epoch: dynamic padding + length-grouped batches vs padding to 512")
    torch.set_num_threads(args.threads)
    full = 512
    sec.details.append("Rows: the weak_label split of the default config (seed 0), tokenised as the pipeline does "
                       "(truncation at the task's max_length). Padded tokens = Σ over batches of "
                       "batch size × longest row (`length_grouped_batches`, seed 0); the original recipe pads "
                       "every row to 512. The pipeline's truncation at max_length is a separate saving (shown).")
    sec.details.append("")
    sec.details.append("| task | model (batch) | rows | max_length | rows truncated | real tokens | pipeline padded "
                       "| pad to max_length | pad to 512 |")
    sec.details.append("|---|---|---|---|---|---|---|---|---|")
    checks = []
    for task in ("safety", "legal"):
        max_length = cfg["tasks"][task]["max_length"]
        splits = task_splits(cfg, task)
        rows = splits["weak_label"]
        for name in ("minilm-l6", "gpt2-scratch"):
            batch_size = cfg["models"][name]["train"]["batch_size"]
            with quiet():
                _, tokenizer = build_transformer(model_spec(cfg, name), joined_texts(splits["weak_train"]), max_length)
                untruncated = encode(tokenizer, rows, 100_000)
            lengths = [len(f["input_ids"]) for f in encode(tokenizer, rows, max_length)]
            n, dynamic = len(lengths), padded_tokens(lengths, batch_size, 0)
            truncated = sum(len(f["input_ids"]) > max_length for f in untruncated)
            sec.details.append(f"| {task} | {name} ({batch_size}) | {n} | {max_length} | {truncated} "
                               f"({100 * truncated / n:.1f}%) | {sum(lengths):,} | {dynamic:,} | {n * max_length:,} | "
                               f"{n * full:,} |")
            sec.rows.append(Row("2", f"padded tokens/epoch, {task}, {name} tokenizer (batch {batch_size})",
                                f"pipeline {dynamic:,}", f"pad to 512: {n * full:,}", dynamic / (n * full), "<= 0.25"))
        # equal accuracy: the same rows with dynamic padding and padded to the longest the model takes
        test = splits["test"].iloc[:args.padding_rows].reset_index(drop=True)
        for name, role in (("minilm-l6", "ceiling/minilm-l6"), ("gpt2-scratch", "weak/gpt2-scratch")):
            model, tokenizer, origin = load_checkpoint_or_build(REPO / "results" / task / role / "seed0", cfg, name,
                                                                joined_texts(splits["weak_train"]), max_length)
            limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions")
            pad_to = min(full, limit)
            feats = encode(tokenizer, test, max_length)
            dynamic_p, fixed_p = padding_predictions(model, tokenizer, feats, pad_to, 64)
            agree = float(np.mean((dynamic_p >= 0.5) == (fixed_p >= 0.5)))
            diff = float(np.max(np.abs(dynamic_p - fixed_p)))
            checks.append(f"| {task} | {name} | {origin} | {len(feats)} | {pad_to} | {100 * agree:.1f}% | {diff:.2e} |")
            sec.rows.append(Row("2", f"same predictions with dynamic padding vs padded to {pad_to}, {task}, {name} "
                                     f"({len(feats)} test rows)", f"hard agreement {100 * agree:.1f}%",
                                f"max abs ΔP {diff:.1e}", agree, ">= 1.0 and ΔP < 1e-4", also=diff < 1e-4))
            del model
    sec.details += ["", "Predictions (P(class 1)) of the same test rows, dynamic padding (`predict_proba`) vs "
                    "every row padded to the model's limit (512 for MiniLM; the scratch GPT-2 has only "
                    "max_length positions, so it is padded to that):", "",
                    "| task | model | weights | rows | padded to | hard agreement | max abs diff |",
                    "|---|---|---|---|---|---|---|", *checks]
    return sec


# --- 3. generation throughput ---------------------------------------------------------------------


def time_generation(model, tokenizer, prompts: list[str], decoding, seed: int) -> tuple[Timing, int, int]:
    """(Timing, continuations, new tokens) of w2s_align.lm.generate."""
    import torch

    from w2s_align.lm import generate

    with stopwatch() as timing, quiet():
        df = generate(model, tokenizer, prompts, decoding, torch.device("cpu"), seed)
    return timing, len(df), int(df["n_new_tokens"].sum())


def bench_generation(args, cfg: dict) -> Section:
    import torch

    from w2s_align.corpus import PromptSpec, eval_prompts
    from w2s_align.lm import Decoding, base_lm, load_lm

    sec = Section("3. Generation throughput: batched vs one prompt at a time")
    torch.set_num_threads(args.threads)
    tox = cfg["tasks"]["toxicity"]
    prompts = eval_prompts(PromptSpec(source=str(REPO / tox["prompts"]["source"]), n=args.prompts))["prompt"].tolist()
    decoding = {k: v for k, v in tox["decoding"].items() if k != "batch_size"}
    decoding["max_new_tokens"] = args.new_tokens
    models = []
    gguf = REPO / "results/models/smollm2-135m"
    if (gguf / "model.safetensors").exists():
        with quiet():
            models.append(("smollm2-135m (base)", *base_lm(model_spec(cfg, "smollm2-135m"), local_dir=str(gguf))))
    else:
        sec.details.append("SmolLM2 skipped: results/models/smollm2-135m/ missing (run the pipeline once).")
    weak = REPO / "results/toxicity/weak/gpt2-scratch/seed0"
    if (weak / "model.safetensors").exists():
        with quiet():
            model, tokenizer, _ = load_lm(str(weak / "model.safetensors"), str(weak / "model.json"))
        models.append(("gpt2-scratch (weak LM)", model, tokenizer))
    sec.details.append(f"{len(prompts)} RTP challenging prompts (`eval_prompts`, test_seed 0) × 1 sample × "
                       f"{args.new_tokens} new tokens, top_p {decoding['top_p']}, "
                       f"temperature {decoding['temperature']}, "
                       f"`w2s_align.lm.generate` on CPU ({torch.get_num_threads()} threads); batch size "
                       f"{args.gen_batch} vs 1; one warm-up call first; calls shorter than 2 s in all are "
                       f"repeated (best of up to 10). Same sampling seed both ways.")
    sec.details += ["", "| model | batch | seconds | CPU s | continuations/s | new tokens | new tokens/s |",
                    "|---|---|---|---|---|---|---|"]
    cpu_ratios = []
    for label, model, tokenizer in models:
        time_generation(model, tokenizer, prompts[:2], Decoding(**{**decoding, "max_new_tokens": 2}, batch_size=2), 0)
        result = {}
        for batch_size in (args.gen_batch, 1):
            runs = [time_generation(model, tokenizer, prompts, Decoding(**decoding, batch_size=batch_size), 0)]
            while sum(r[0].wall for r in runs) < 2.0 and len(runs) < 10:  # short: repeat, keep the best
                runs.append(time_generation(model, tokenizer, prompts, Decoding(**decoding, batch_size=batch_size), 0))
            t, n, tokens = min(runs, key=lambda r: r[0].wall)
            result[batch_size] = (t, n)
            sec.details.append(f"| {label} | {batch_size} | {t.wall:.2f} | {t.cpu:.2f} | {n / t.wall:.2f} | {tokens} | "
                               f"{tokens / t.wall:.1f} |")
        (tb, nb), (t1, n1) = result[args.gen_batch], result[1]
        sb, s1 = tb.wall, t1.wall
        cpu_ratios.append(f"{label}: {(nb / tb.cpu) / (n1 / t1.cpu):.2f}")
        sec.rows.append(Row("3", f"continuations/s, {label}, batch {args.gen_batch} vs 1",
                            f"batched {nb / sb:.2f}/s ({sb:.1f} s)", f"one at a time {n1 / s1:.2f}/s ({s1:.1f} s)",
                            (nb / sb) / (n1 / s1), ">= 8"))
    sec.details += ["", f"Ratio of continuations per CPU-second (batched / one at a time): {'; '.join(cpu_ratios)}. "
                    "A prompt generated alone stops at its EOS; a batch runs until every row has stopped (or "
                    "max_new_tokens), so a model that often ends early (few new tokens) gains little from batching."]
    return sec


# --- 4. dry-run time --------------------------------------------------------------------------------


def bench_dry_run(args, cfg: dict) -> Section:
    sec = Section("4. Dry-run time of the DAG")
    goals = {"paper-scale (`--configfile configs/paper.yaml`)": (["--configfile", "configs/paper.yaml"], 10.0),
             "default (`config.yaml`)": ([], 3.0)}
    with tempfile.TemporaryDirectory(prefix="w2s-bench-dry-") as tmp:
        workdir = copy_workflow(Path(tmp))
        sec.details.append(f"`snakemake -n` in a fresh copy of the workflow files (nothing built, so the whole DAG "
                           f"is pending), best of {args.dry_runs}.")
        sec.details += ["", "| config | jobs | runs (s) |", "|---|---|---|"]
        for label, (extra, goal) in goals.items():
            times, jobs = [], 0
            for _ in range(args.dry_runs):
                seconds, out = run_snakemake(workdir, "-n", *extra)
                times.append(seconds)
                jobs = job_total(out)
            best = min(times)
            sec.details.append(f"| {label} | {jobs} | {', '.join(f'{t:.2f}' for t in times)} |")
            sec.rows.append(Row("4", f"dry run, {label}: {jobs} jobs", f"best {best:.2f} s", f"goal {goal:g} s",
                                best / goal, "<= 1"))
    return sec


# --- 5. incremental reruns ---------------------------------------------------------------------------


def config_changes(cfg: dict) -> list[tuple[str, str, callable]]:
    """(key, description, edit) for the three edits: strong-model lr, a new strategy, the scorer."""
    strong = next(m for m in cfg["strong_models"] if cfg["models"][m]["kind"] != "tfidf")
    lr = cfg["models"][strong].get("train", {}).get("lr", 1e-4)
    strategy = next(n for n in ("confident", "confident-50", "confident-half") if n not in cfg["strategies"])
    tox = next((t for t, v in cfg["tasks"].items() if v.get("kind") == "generation"), None)
    scorer = tox and cfg["tasks"][tox]["scorer"]
    other = tox and next((s for s, v in cfg["scorers"].items() if s != scorer and v.get("kind") == "trained"), None)

    def lr_change(c):
        c["models"][strong].setdefault("train", {})["lr"] = lr / 2

    def new_strategy(c):
        c["strategies"][strategy] = {"top_fraction": 0.5}
        c["student_strategies"] = [*c["student_strategies"], strategy]

    def scorer_change(c):
        c["tasks"][tox]["scorer"] = other

    changes = [("a", f"strong-model lr: `models.{strong}.train.lr` {lr:g} → {lr / 2:g}", lr_change),
               ("b", f"new strategy `{strategy}: {{top_fraction: 0.5}}` in `strategies` and `student_strategies`",
                new_strategy)]
    if other:
        changes.append(("c", f"scorer: `tasks.{tox}.scorer` {scorer} → {other}", scorer_change))
    return changes


def failure_reason(log: str) -> str:
    """The pipeline's own error line (w2s_align ERROR ...) or snakemake's last error line."""
    errors = re.findall(r"ERROR w2s_align\S*: (.*)", log) or re.findall(r"^(Error in rule \w+):", log, flags=re.M)
    return errors[-1].strip() if errors else "snakemake failed (see its log)"


RUN_STATE = ("results", "logs", ".snakemake")  # what a snakemake run changes in the workflow copy


def copy_state(src: Path, dest: Path) -> None:
    """Replace dest's run state by src's (copy2 keeps modification times, which snakemake compares)."""
    for name in RUN_STATE:
        shutil.rmtree(dest / name, ignore_errors=True)
        if (src / name).exists():
            shutil.copytree(src / name, dest / name, symlinks=True)


def timed_edit(workdir: Path, snapshot: Path, original: str, changed: dict, cores: str) -> dict:
    """Run with the edited config (timed), then put back the original config and the finished state
    saved in `snapshot`; a dry run checks that nothing is pending."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
    seconds, log, ok = run_snakemake_checked(workdir, "--cores", cores)
    (workdir / "config.yaml").write_text(original)
    start = time.perf_counter()
    copy_state(snapshot, workdir)
    restore = time.perf_counter() - start
    _, pending = run_snakemake(workdir, "-n")
    return {"seconds": seconds, "jobs": executed_jobs(log), "ok": ok, "error": "" if ok else failure_reason(log),
            "restore": restore, "pending": job_total(pending)}


def bench_reruns(args, cfg: dict) -> Section:
    config_path = (REPO / args.rerun_config).resolve()
    run_cfg = load_config(config_path)
    cores = str(args.cores)
    sec = Section(f"5. Incremental reruns after a finished run ({config_path.relative_to(REPO)})")
    keep = tempfile.mkdtemp(prefix="w2s-bench-rerun-") if args.keep else None
    with contextlib.ExitStack() as stack:
        tmp = keep or stack.enter_context(tempfile.TemporaryDirectory(prefix="w2s-bench-rerun-"))
        workdir = copy_workflow(Path(tmp) / "workflow", config_path)
        original = (workdir / "config.yaml").read_text()
        full, log = run_snakemake(workdir, "--cores", cores)
        full_jobs = executed_jobs(log)
        args.job_seconds = (job_seconds(workdir), f"benchmark 5's full run of `{config_path.relative_to(REPO)}`")
        snapshot = Path(tmp) / "finished"
        copy_state(workdir, snapshot)
        sec.details.append(f"Copy of the workflow in {'`' + tmp + '` (kept)' if keep else 'a temporary folder'} with "
                           f"`{config_path.relative_to(REPO)}` as config.yaml, PYTHONPATH = the copy's src. "
                           f"Full run `snakemake --cores {cores}`: {full:.1f} s, {sum(full_jobs.values())} jobs "
                           f"({jobs_text(full_jobs)}). Its finished state ({', '.join(RUN_STATE)}) is copied aside "
                           f"with modification times. Each edit: change config.yaml, `snakemake --cores {cores}` "
                           f"(timed), then put the original config.yaml and the finished state back; a dry run "
                           f"then checks that nothing is pending.")
        sec.details += ["", "| edit | wall s | fraction of full run | jobs that ran | state restored |",
                        "|---|---|---|---|---|"]
        for key, description, edit in config_changes(run_cfg):
            changed = copy.deepcopy(run_cfg)
            edit(changed)
            r = timed_edit(workdir, snapshot, original, changed, cores)
            status = "" if r["ok"] else f" — **failed**: {r['error']}"
            pending = f"**{r['pending']} jobs still pending**" if r["pending"] else "nothing pending"
            sec.details.append(f"| ({key}) {description} | {r['seconds']:.1f} | {r['seconds'] / full:.3f} | "
                               f"{jobs_text(r['jobs'])}{status} | {r['restore']:.1f} s; {pending} |")
            n_jobs = sum(r["jobs"].values())
            sec.rows.append(Row("5", f"rerun ({key}) {description.split(':')[0].replace('`', '')}: {n_jobs} jobs"
                                     + ("" if r["ok"] else " — **failed**, see details"),
                                f"{r['seconds']:.1f} s", f"full run {full:.1f} s",
                                r["seconds"] / full if r["ok"] else math.nan))
    return sec


# --- 6. the slowest stage, profiled and fixed -----------------------------------------------------------


def job_seconds(workdir: Path) -> dict[str, float]:
    """Wall seconds of every job with a `benchmark:` file (results/benchmarks/...tsv) in `workdir`."""
    root = workdir / "results" / "benchmarks"
    return {str(p.relative_to(root).with_suffix("")): float(p.read_text().splitlines()[1].split("\t")[0])
            for p in sorted(root.rglob("*.tsv"))}


def bench_slowest_stage(args, cfg: dict) -> Section:
    """Rank the default run's jobs, then time the fix of what profiling its slowest one (MiniLM on
    legal) showed: legal training steps with fused AdamW (the pipeline's) vs torch's per-tensor CPU
    default, same batches, alternating."""
    import torch

    from w2s_align.loop import setup_torch
    from w2s_align.models import build_transformer
    from w2s_align.train import encode, joined_texts

    sec = Section("6. Slowest stage of the default run: profiled, fixed, gain")
    times, source = getattr(args, "job_seconds", None) or (job_seconds(REPO), "`results/` of this checkout")
    if times:
        slowest = sorted(times.items(), key=lambda kv: -kv[1])[:5]
        sec.details.append(f"Slowest jobs ({source}, from their `benchmark:` files): "
                           + ", ".join(f"{job} {seconds:.0f} s" for job, seconds in slowest) + ".")
    else:
        sec.details.append("No finished run found to rank jobs (run benchmark 5 with the default config, "
                           "or the pipeline, first).")
    sec.details.append("")
    sec.details.append("The profile (py-spy) and the fix are described in benchmarks/README.md (benchmark 6): "
                       "AdamW ran torch's per-tensor CPU loop; the pipeline now uses `AdamW(fused=True)`. Below, "
                       "the same batches and init in one loop, only the optimizer differs.")
    task, name, seed = "legal", "minilm-l6", 0
    max_length = cfg["tasks"][task]["max_length"]
    splits = task_splits(cfg, task, seed)
    hp = train_params(cfg, name, epochs=1)
    with quiet():
        device = setup_torch(args.threads, seed)
        model, tokenizer = build_transformer(model_spec(cfg, name), joined_texts(splits["weak_label"]), max_length)
    rows = splits["weak_label"].iloc[:args.fix_steps * hp.batch_size].reset_index(drop=True)
    batches = collated_batches(encode(tokenizer, rows, max_length), rows["gt_label"].to_numpy(), tokenizer,
                               hp.batch_size, device, seed)
    init_state = copy.deepcopy(model.state_dict())
    bare_epoch(model, init_state, batches[:2], hp, device, seed)  # warm-up
    runs = {True: [], False: []}
    for r in range(args.fix_repeats):
        for fused in ((True, False) if r % 2 == 0 else (False, True)):
            runs[fused].append(bare_epoch(model, init_state, batches, hp, device, seed, fused=fused))
    sec.details += ["", f"{task} weak_label rows, {name}, batch {hp.batch_size}, max_length {max_length}, "
                    f"{len(batches)} steps, {torch.get_num_threads()} threads, {args.fix_repeats} alternating "
                    f"runs each (best shown):", "",
                    "| AdamW | seconds (runs) | steps/s | time in optimizer.step | mean loss |", "|---|---|---|---|---|"]
    best = {}
    for fused, label in ((False, "per-tensor (torch CPU default, before)"), (True, "fused (pipeline now)")):
        timing, loss, in_step = min(runs[fused], key=lambda x: x[0].wall)
        best[fused] = timing.wall
        sec.details.append(f"| {label} | {timing.wall:.2f} ({', '.join(f'{x[0].wall:.2f}' for x in runs[fused])}) | "
                           f"{len(batches) / timing.wall:.2f} | {in_step:.2f} s ({in_step / timing.wall:.0%}) | "
                           f"{loss:.5f} |")
    sec.rows.append(Row("6", f"training steps/s, {task} {name} (slowest stage), fused vs per-tensor AdamW",
                        f"fused {len(batches) / best[True]:.2f} steps/s ({best[True]:.1f} s)",
                        f"per-tensor {len(batches) / best[False]:.2f} steps/s ({best[False]:.1f} s)",
                        best[False] / best[True]))
    return sec


# --- driver -------------------------------------------------------------------------------------------


BENCHMARKS = {1: bench_training, 2: bench_padding, 3: bench_generation, 4: bench_dry_run, 5: bench_reruns,
              6: bench_slowest_stage}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(map(str, BENCHMARKS)),
                    help="comma-separated benchmark numbers (default: all)")
    ap.add_argument("--quick", action="store_true",
                    help="fewer steps and prompts, one dry run (minutes, for trying out)")
    ap.add_argument("--threads", type=int, default=available_cores(), help="torch threads (default: all cores)")
    ap.add_argument("--cores", type=int, default=available_cores(), help="snakemake --cores for benchmark 5")
    ap.add_argument("--rerun-config", help="config for benchmark 5, relative to the repo (default: config.yaml, "
                    "the ~21 min default run; with --quick: tests/configs/tiny.yaml)")
    ap.add_argument("--repeats", type=int, help="alternating pipeline/bare runs per model in benchmark 1 "
                    "(default: 3 for MiniLM, 6 for the scratch GPT-2; best of each)")
    ap.add_argument("--keep", action="store_true", help="keep benchmark 5's finished workflow copy")
    ap.add_argument("--output", default=str(REPO / "benchmarks" / "results.md"), help="Markdown file to write")
    args = ap.parse_args(argv)
    args.only = sorted({int(x) for x in args.only.split(",") if x.strip()})
    if bad := [x for x in args.only if x not in BENCHMARKS]:
        ap.error(f"--only: unknown benchmark(s) {bad}; choose from {sorted(BENCHMARKS)}")
    args.train_steps = {"minilm-l6": 8, "gpt2-scratch": 8} if args.quick else {"minilm-l6": 40, "gpt2-scratch": 60}
    args.train_repeats = {name: args.repeats or default for name, default in (("minilm-l6", 3), ("gpt2-scratch", 6))}
    args.padding_rows = 16 if args.quick else 64
    args.prompts, args.new_tokens, args.gen_batch = (8, 8, 8) if args.quick else (32, 20, 32)
    args.dry_runs = 1 if args.quick else 3
    args.rerun_config = args.rerun_config or ("tests/configs/tiny.yaml" if args.quick else "config.yaml")
    args.fix_steps, args.fix_repeats = (6, 1) if args.quick else (30, 2)
    return args


def report(args, sections: list[Section], started: datetime.datetime, seconds: float, argv: list[str]) -> str:
    command = " ".join(["python", "benchmarks/run.py", *map(shlex.quote, argv)])
    rows = [r for s in sections for r in s.rows]
    lines = ["# w2s-align benchmarks", "",
             f"- command: `{command}`" + (" (quick mode: small sizes, not for comparison)" if args.quick else ""),
             f"- date: {started:%Y-%m-%d %H:%M} UTC, total {seconds / 60:.1f} min",
             f"- machine: {machine_line(args.threads)}",
             f"- threads: torch.set_num_threads({args.threads}); snakemake --cores {args.cores}; "
             f"load average at start {os.getloadavg()[0]:.2f}"]
    contention = [f"  - benchmark {s.title.split('.')[0]}: {c}" for s in sections for c in s.contention]
    lines.append("- other snakemake/pytest processes (sampled every 5 s): "
                 + ("**the CPU was shared while measuring; treat the ratios with care**" if contention
                    else "none seen"))
    lines += contention
    lines += ["", "Every figure is a ratio of two measurements taken in this run on this machine "
              "(ratio = measured / baseline; for reruns, a fraction of the full run; for dry runs, time / goal).",
              "", table(rows), ""]
    for s in sections:
        lines += [f"## {s.title}", "", f"({s.seconds:.0f} s)", "", *s.details, ""]
    return "\n".join(lines)


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
    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
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
                section = Section(f"{number}. {BENCHMARKS[number].__name__} **failed**",
                                  details=["```", traceback.format_exc()[-3000:], "```"])
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
