"""What one job costs, without running it: peak GPU and host memory (footprint.py), wall time on a named GPU
from a throughput model, checkpoint bytes and web-API volume. A job's Work comes from Snakemake's DAG: its
rule declares the kind of work and the model in its resources (request() in workflow/rules/common.smk).
Standard library only (DAG time); the plan of a whole run and the request check at workflow start: plan.py.

Throughput model (docs/cluster.md#plan): k x N x tokens FLOPs, N the parameters in matrix products, k = 6 for
full fine-tuning, 4 for LoRA (frozen weights get no weight gradients), + 2 under activation checkpointing, 2
for inference and generation; at MFU 0.3 of the GPU's dense bf16 peak; plus fixed seconds per job (start-up,
weight loading), micro-batch and decoding step (or a step's weight reads at the GPU's memory bandwidth, if
slower); rows average half their task's token limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from w2s_align.cluster import api_quota
from w2s_align.cluster.footprint import MB, PROCESS_MB, Memory, memory, model_shape, weight_bytes
from w2s_align.settings import paths
from w2s_align.settings.settings import Decoding, Settings, TrainParams

GPUS = {
    "a100": ("NVIDIA A100-SXM4-80GB", 312e12, 2.0e12, 80),
    "h100": ("NVIDIA H100-SXM5-80GB", 989e12, 3.35e12, 80),
}
MFU = 0.3  # model FLOPs utilisation of the dense bf16 peak
FILL = 0.5  # average tokens per row / the task's max_length (dynamic padding)
STEP_S = {"train": 0.05, "infer": 0.02, "decode": 0.02}  # fixed seconds per micro-batch, batch, decoding step
START_S = 90  # per job: imports, CUDA start, reading and tokenising data
LOAD_BPS = 0.5e9  # weights read from a shared filesystem, bytes/s
OPTIMIZER_BYTES = 40  # memory traffic per trainable parameter and update: fused AdamW, gradient clipping
CPU_PARAMS_PER_S = 20e6  # GGUF dequantisation on a CPU core
# The kinds of work a rule declares (`request(model, work=KIND)` in its resources) and the stage each is
# estimated as; a new rule names one of these kinds and is planned without editing this module.
KINDS = {
    "train": "train",
    "train_scorer": "train",
    "train_lm": "train_lm",
    "train_dpo": "train_lm",
    "weak_labels": "predict",
    "predict": "predict",
    "weak_generations": "generate",
    "best_of_n": "generate",
    "generate": "generate",
    "gold": "generate",
    "candidates": "generate",
    "perplexity": "perplexity",
    "pair_logps": "perplexity",
    "score": "score",
    "judge": "score",
    "convert": "convert",
}
PREFERENCE_KINDS = ("train_dpo", "candidates", "judge", "pair_logps")


class Work(NamedTuple):
    """What sets a job's cost: its rule, the kind of work it declares, its model and the config entries it
    reads."""

    rule: str
    kind: str
    model: str | None
    task: str | None = None
    role: str | None = None  # weak / ceiling / student: whose training settings a fine-tune reads
    strategy: str | None = None
    scorer: str | None = None
    n: int = 1  # best_of_n, gold, candidates: continuations per prompt
    share: float = 1.0  # the share of its model's runtime request the job asks for (request() in common.smk)


def describe(
    settings: Settings,
    rule: str,
    kind: str,
    model: str | None,
    wildcards: dict[str, str],
    role: str | None = None,
    share: float = 1.0,
) -> Work:
    """The Work of a DAG job: its rule, declared kind and model (resolved from its wildcards) and
    wildcards."""
    if kind not in KINDS:
        raise ValueError(f"rule {rule}: unknown kind of work {kind!r}; known kinds: {sorted(KINDS)}")
    task, strategy_name, scorer, n = (
        wildcards.get("task"),
        wildcards.get("strategy"),
        wildcards.get("scorer"),
        1,
    )
    if kind == "best_of_n":
        n = int(wildcards["n"])
    elif kind == "gold":
        gold = settings.tasks[task].gold
        scorer, n = gold.judge, gold.samples
    elif kind == "candidates":
        n = 2
    role = role or ("student" if strategy_name else "ceiling")
    return Work(rule, kind, model, task, role, strategy_name, scorer, n, share)


@dataclass(frozen=True)
class Estimate:
    gpus: int
    seconds: float
    memory: Memory | None  # None: a model without a shape (TF-IDF, a hub scorer, an unknown size)
    disk: float  # checkpoint bytes written
    api_calls: int = 0
    api_hours: float = 0.0


def _data(settings: Settings, work: Work) -> tuple[dict[str, int], int, TrainParams]:
    """(row counts, max_length, training settings) of the data a job reads."""
    if work.kind == "train_scorer" or (work.task is None and work.scorer):
        scorer = settings.scorers[work.scorer]
        return scorer.data.sizes, scorer.entry["max_length"], scorer.train
    task = settings.tasks[work.task]
    if work.kind in PREFERENCE_KINDS:
        hp = settings.dpo[work.task, work.model] if work.model in settings.models else TrainParams()
        return task.preferences.sizes, task.max_length, hp
    sizes = task.data.sizes if task.kind == "classification" else task.corpus.sizes
    hp = settings.hparams(work.model, work.role) if work.model in settings.models else TrainParams()
    return sizes, task.max_length, hp


def job_gpus(settings: Settings, work: Work) -> int:
    if work.kind == "convert":
        return 0
    if work.kind == "score":
        return paths.scorer_gpus(settings, work.scorer)
    return (
        1 if KINDS[work.kind] in ("train_lm", "generate", "perplexity") else paths.gpus(settings, work.model)
    )


def estimate(
    settings: Settings, work: Work, gpu: str = "a100", workdir: str = ".", device: str | None = None
) -> Estimate:
    """Peak memory, wall time on `gpu`, checkpoint bytes and API volume of one job (on a GPU if it asks for
    one, or on `device` "cpu"/"gpu")."""
    stage, gpus = KINDS[work.kind], job_gpus(settings, work)
    calls, hours = 0, 0.0
    if (
        work.scorer
        and work.kind in (*api_quota.SCORING_KINDS, "gold")
        and api_quota.api_kind(settings, work.scorer)
    ):
        calls = (
            _gold_texts(settings, work)
            if work.kind == "gold"
            else api_quota.texts_to_score(
                settings, work.task, work.kind, work.n if work.kind == "best_of_n" else None
            )
        )
        hours = calls / api_quota.scorer_qps(settings, work.scorer) / 3600
    spec = settings.models[work.model].spec if work.model in settings.models else None
    if stage == "convert":  # GGUF file + dequantised fp32 weights + their serialised bytes, on a CPU
        shape = model_shape(settings, work.model, 512, workdir)
        n = shape.params() if shape else 0
        return Estimate(
            0, START_S + n / CPU_PARAMS_PER_S, Memory(0, PROCESS_MB["cpu"] * MB + 9 * n, 0), 4 * n
        )
    sizes, max_length, hp = _data(settings, work)
    shape = model_shape(settings, work.model, max_length, workdir) if spec else None
    if shape is None:  # TF-IDF, a hub or API scorer: CPU-light, no checkpoint worth counting
        return Estimate(gpus, START_S + hours * 3600, None, 0.0, calls, hours)
    seq, head = (
        max(1, round(FILL * max_length)),
        "lm" if stage in ("train_lm", "generate", "perplexity") else "cls",
    )
    lora, dtype, checkpointing = spec.lora, spec.dtype, spec.gradient_checkpointing
    device = device or ("gpu" if gpus else "cpu")
    decoding = settings.tasks[work.task].decoding if work.task else Decoding()
    train_rows = infer_rows = gen_rows = 0
    if (
        work.kind == "train_dpo"
    ):  # chosen + rejected of every pair; the reference pass over train and val first
        train_rows = 2 * hp.epochs * sizes["train"]
        infer_rows = 2 * (sizes["train"] + sizes["val"] + hp.epochs * sizes["val"])
    elif work.kind in ("candidates", "judge"):
        gen_rows, infer_rows = (
            (2 * sum(sizes.values()), 0) if stage == "generate" else (0, 2 * sum(sizes.values()))
        )
    elif work.kind == "pair_logps":
        infer_rows = 2 * sizes["test"]
    elif stage in ("train", "train_lm"):
        key = (
            "train"
            if work.kind == "train_scorer"
            else ("weak_train" if work.role == "weak" else "weak_label")
        )
        rounds = 1 + (settings.strategies[work.strategy].bootstrap_rounds if work.strategy else 0)
        train_rows = rounds * hp.epochs * sizes[key]
        infer_rows = (
            rounds * hp.epochs * sizes.get("val", 0)
            + (rounds - 1) * sizes[key]
            + sizes.get("test", 0) * (work.kind == "train_scorer")
        )
    elif stage == "predict":
        infer_rows = sum(
            sizes.get(s, 0) for s in ("val", "test", *(("weak_label",) * (work.kind == "weak_labels")))
        )
    elif work.kind in ("weak_generations", "best_of_n"):
        gen_rows = (sizes.get("weak_label", 0) + sizes.get("val", 0)) * work.n
    elif work.kind == "gold":  # samples of every training prompt, and their perplexity
        gen_rows = infer_rows = _gold_texts(settings, work)
    else:
        gen_rows, infer_rows = (
            (_eval_texts(settings, work.task), 0)
            if stage == "generate"
            else (0, _eval_texts(settings, work.task))
        )
    new_tokens = decoding.max_new_tokens if gen_rows or stage == "perplexity" else 0
    training = bool(train_rows)
    eval_rows = min(hp.eval_batch_size, (sizes.get("val") if training else infer_rows) or hp.eval_batch_size)
    per_row = 2 if work.kind == "train_dpo" else 1  # DPO: a pair is two sequences
    peak = memory(
        shape,
        head,
        device,
        dtype=dtype,
        lora=lora,
        training=training,
        batch=hp.batch_size * per_row,
        eval_batch=decoding.batch_size if gen_rows else eval_rows,
        seq=seq if gen_rows else max_length,
        new_tokens=new_tokens if gen_rows else 0,
        checkpointing=checkpointing,
        snapshot=hp.epochs > 1,
        data_tokens=(sum(sizes.values()) + gen_rows + infer_rows * (stage in ("score", "perplexity")))
        * max_length,
    )
    n_mm, (_, peak_flops, bandwidth, _) = shape.matmul_params(head), GPUS[gpu]
    k = (4 if lora else 6) + 2 * checkpointing
    flops = n_mm * (k * train_rows * seq + 2 * (infer_rows + gen_rows) * (seq + new_tokens))
    weights = weight_bytes(dtype, device, training and not lora) * shape.params(head)
    updates = math.ceil(train_rows / hp.batch_size / hp.accumulation_steps())
    seconds = (
        START_S
        + shape.params(head) * shape.file_bytes / LOAD_BPS
        + flops / (peak_flops * MFU)
        + math.ceil(train_rows / hp.batch_size) * STEP_S["train"]
        + math.ceil(infer_rows / hp.eval_batch_size) * STEP_S["infer"]
        + hours * 3600
        + math.ceil(gen_rows / decoding.batch_size) * new_tokens * max(STEP_S["decode"], weights / bandwidth)
        + updates * peak.trainable * OPTIMIZER_BYTES / bandwidth
    )
    return Estimate(gpus, seconds, peak, peak.trainable * 4 if training else 0.0, calls, hours)


def _gold_texts(settings: Settings, work: Work) -> int:
    sizes = settings.tasks[work.task].corpus.sizes
    return sum(sizes.get(s, 0) for s in ("weak_train", "weak_label", "val")) * work.n


def _eval_texts(settings: Settings, task: str) -> int:
    return settings.tasks[task].prompts.n * settings.tasks[task].eval_samples
