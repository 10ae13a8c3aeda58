"""What one job costs, without running it: peak GPU and host memory (footprint.py), wall time on a named GPU from
a throughput model, checkpoint bytes and web-API volume; and every job a config's DAG holds, without the DAG.
Standard library only (DAG time); the plan of a whole run and the request check at workflow start: plan.py.

Throughput model (docs/cluster.md#plan): k x N x tokens FLOPs, N the parameters in matrix products, k = 6 for
full fine-tuning, 4 for LoRA (frozen weights get no weight gradients), + 2 under activation checkpointing, 2 for
inference and generation; at MFU 0.3 of the GPU's dense bf16 peak; plus fixed seconds per job (start-up, weight
loading), micro-batch and decoding step (or a step's weight reads at the GPU's memory bandwidth, if slower);
rows average half their task's token limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from w2s_align.settings import paths as layout
from w2s_align.cluster import api_quota
from w2s_align.settings.settings import Decoding, Settings, TrainParams
from w2s_align.cluster.footprint import MB, PROCESS_MB, Memory, memory, model_shape, weight_bytes

GPUS = {"a100": ("NVIDIA A100-SXM4-80GB", 312e12, 2.0e12, 80), "h100": ("NVIDIA H100-SXM5-80GB", 989e12, 3.35e12, 80)}
MFU = 0.3  # model FLOPs utilisation of the dense bf16 peak
FILL = 0.5  # average tokens per row / the task's max_length (dynamic padding)
STEP_S = {"train": 0.05, "infer": 0.02, "decode": 0.02}  # fixed seconds per micro-batch, batch, decoding step
START_S = 90  # per job: imports, CUDA start, reading and tokenising data
LOAD_BPS = 0.5e9  # weights read from a shared filesystem, bytes/s
OPTIMIZER_BYTES = 40  # memory traffic per trainable parameter and update: fused AdamW, gradient clipping
CPU_PARAMS_PER_S = 20e6  # GGUF dequantisation on a CPU core
DPO_RULES = ("train_dpo_ceiling", "train_dpo_student")
PREFERENCE_RULES = (*DPO_RULES, "preference_candidates", "judge_candidates", "reference_pair_logps", "pair_logps")
STAGES = {"train": ("train_weak", "train_ceiling", "train_student", "train_scorer"),
          "train_lm": ("train_weak_lm", "train_lm_ceiling", "train_lm_student", *DPO_RULES),
          "predict": ("weak_labels", "predict"),
          "generate": ("weak_generations", "best_of_n", "lm_generations", "base_generations", "gold_corpus",
                       "preference_candidates"),
          "perplexity": ("perplexity", "reference_pair_logps", "pair_logps"),
          "score": ("score_generations", "judge_candidates"), "convert": ("convert_gguf",)}
STAGE = {rule: stage for stage, rules in STAGES.items() for rule in rules}


class Work(NamedTuple):
    """What sets a job's cost: its rule, model and the config entries it reads."""

    rule: str
    model: str | None
    task: str | None = None
    strategy: str | None = None
    scorer: str | None = None
    n: int = 1  # best_of_n, gold_corpus: continuations per prompt


def describe(settings: Settings, rule: str, wc: dict[str, str]) -> Work | None:
    """The Work of a DAG job (rule + wildcards); None for the cheap local rules."""
    task = wc.get("task")
    if rule in ("train_weak", "weak_labels", "train_weak_lm", "weak_generations"):
        return Work(rule, wc["weak"], task)
    if rule == "best_of_n":
        return Work(rule, wc["weak"], task, scorer=wc["scorer"], n=int(wc["n"]))
    if rule == "gold_corpus":
        return gold_work(settings, task)
    if rule in ("train_ceiling", "train_lm_ceiling", "base_generations", "train_dpo_ceiling", "reference_pair_logps"):
        return Work(rule, wc["strong"], task)
    if rule in ("train_student", "train_lm_student", "train_dpo_student"):
        return Work(rule, wc["strong"], task, wc["strategy"])
    if rule in ("predict", "lm_generations", "pair_logps"):
        parts = wc["model_run"].split("/")
        return Work(rule, parts[1].split("__")[-1] if parts[0].endswith("student") else parts[1], task)
    if rule == "preference_candidates":
        return Work(rule, settings.tasks[task].preferences.generator, task, n=2)
    if rule == "perplexity":
        return Work(rule, settings.tasks[task].reference_lm, task)
    if rule in ("train_scorer", "score_generations", "judge_candidates"):
        return Work(rule, layout.scorer_model(settings, wc["scorer"]), task, scorer=wc["scorer"])
    return Work(rule, layout.gguf_models(settings)[wc["gguf"]]) if rule == "convert_gguf" else None


def model_works(settings: Settings) -> set[Work]:
    """Every Work the config's DAG holds (and a few it may not: a check covers them all), without the DAG."""
    works, models = set(), settings.models
    for task in settings.active_tasks():
        spec = settings.tasks[task]
        weak = [m for w in spec.weak_models for m in (models[w].spec.members or [w])]
        strong, names = spec.strong_models, spec.student_strategies
        if spec.kind == "classification":
            works |= {Work(r, m, task) for m in weak for r in ("train_weak", "weak_labels")}
            works |= {Work(r, m, task) for m in strong for r in ("train_ceiling", "predict")}
            works |= {Work("train_student", m, task, s) for m in strong for s in names}
            continue
        scorer, gold = spec.scorer, spec.gold
        lms = [*weak, *strong, *([gold.generator] if gold else []), spec.reference_lm]
        works |= {gold_work(settings, task)} if gold else set()
        works |= {Work(r, m, task) for m in weak for r in ("train_weak_lm", "weak_generations", "lm_generations")}
        works |= {Work(r, m, task) for m in strong for r in ("train_lm_ceiling", "base_generations", "lm_generations")}
        works |= {Work("train_lm_student", m, task, s) for m in strong for s in names}
        works |= {Work("perplexity", lms[-1], task), Work("score_generations", layout.scorer_model(settings, scorer),
                                                            task, scorer=scorer)}
        works |= {Work("convert_gguf", layout.gguf_models(settings)[layout.gguf_name(models[m])]) for m in lms
                  if models[m].spec.gguf_file}
        works |= preference_works(settings, task)
        for chosen in map(settings.strategies.get, names):
            if chosen.best_of:
                works |= {Work("best_of_n", m, task, scorer=chosen.selector, n=chosen.best_of) for m in weak}
        selectors = {scorer, *([gold.judge] if gold else [])} | {settings.strategies[s].selector for s in names
                                                                 if settings.strategies[s].best_of}
        works |= {Work("train_scorer", layout.scorer_model(settings, s), scorer=s) for s in selectors
                  if layout.scorer_model(settings, s)}
    return works


def preference_works(settings: Settings, task: str) -> set[Work]:
    """The preference track's jobs: candidates, judges (and their training), DPO, pair log-probs, evaluation."""
    prefs = settings.tasks[task].preferences
    if not prefs:
        return set()
    policies, judges = settings.preference_policies(task), [prefs.gold_judge, *prefs.weak_judges]
    works = {Work("preference_candidates", prefs.generator, task, n=2)}
    works |= {Work(r, m, task) for m in policies for r in ("train_dpo_ceiling", "reference_pair_logps", "pair_logps",
                                                           "base_generations", "lm_generations")}
    works |= {Work("train_dpo_student", m, task, s) for m in policies for s in prefs.strategies}
    works |= {Work("judge_candidates", layout.scorer_model(settings, j), task, scorer=j) for j in judges}
    works |= {Work("train_scorer", layout.scorer_model(settings, j), scorer=j) for j in judges
              if layout.scorer_model(settings, j)}
    return works | {Work("convert_gguf", layout.gguf_models(settings)[layout.gguf_name(settings.models[m])])
                    for m in [prefs.generator, *policies] if settings.models[m].spec.gguf_file}


def gold_work(settings: Settings, task: str) -> Work:
    gold = settings.tasks[task].gold
    return Work("gold_corpus", gold.generator, task, scorer=gold.judge, n=gold.samples)


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
    if work.rule == "train_scorer" or (work.task is None and work.scorer):
        scorer = settings.scorers[work.scorer]
        return scorer.data.sizes, scorer.entry["max_length"], scorer.train
    task = settings.tasks[work.task]
    if work.rule in PREFERENCE_RULES:
        hp = settings.dpo[work.task, work.model] if work.model in settings.models else TrainParams()
        return task.preferences.sizes, task.max_length, hp
    sizes = task.data.sizes if task.kind == "classification" else task.corpus.sizes
    role = "student" if work.strategy else ("weak" if "weak" in work.rule else "ceiling")
    hp = settings.hparams(work.model, role) if work.model in settings.models else TrainParams()
    return sizes, task.max_length, hp


def job_gpus(settings: Settings, work: Work) -> int:
    if work.rule == "convert_gguf":
        return 0
    if work.rule == "score_generations":
        return layout.scorer_gpus(settings, work.scorer)
    return 1 if STAGE[work.rule] in ("train_lm", "generate", "perplexity") else layout.gpus(settings, work.model)


def estimate(settings: Settings, work: Work, gpu: str = "a100", workdir: str = ".",
             device: str | None = None) -> Estimate:
    """Peak memory, wall time on `gpu`, checkpoint bytes and API volume of one job (on a GPU if it asks for one,
    or on `device` "cpu"/"gpu")."""
    stage, gpus = STAGE[work.rule], job_gpus(settings, work)
    calls, hours = 0, 0.0
    if work.scorer and work.rule != "train_scorer" and api_quota.api_kind(settings, work.scorer):
        calls = (_gold_texts(settings, work) if work.rule == "gold_corpus" else
                 api_quota.texts_to_score(settings, work.task, work.rule, work.n if work.rule == "best_of_n" else None))
        hours = calls / api_quota.scorer_qps(settings, work.scorer) / 3600
    spec = settings.models[work.model].spec if work.model in settings.models else None
    if stage == "convert":  # GGUF file + dequantised fp32 weights + their serialised bytes, on a CPU
        shape = model_shape(settings, work.model, 512, workdir)
        n = shape.params() if shape else 0
        return Estimate(0, START_S + n / CPU_PARAMS_PER_S, Memory(0, PROCESS_MB["cpu"] * MB + 9 * n, 0), 4 * n)
    sizes, max_length, hp = _data(settings, work)
    shape = model_shape(settings, work.model, max_length, workdir) if spec else None
    if shape is None:  # TF-IDF, a hub or API scorer: CPU-light, no checkpoint worth counting
        return Estimate(gpus, START_S + hours * 3600, None, 0.0, calls, hours)
    seq, head = max(1, round(FILL * max_length)), "lm" if stage in ("train_lm", "generate", "perplexity") else "cls"
    lora, dtype, checkpointing = spec.lora, spec.dtype, spec.gradient_checkpointing
    device = device or ("gpu" if gpus else "cpu")
    decoding = settings.tasks[work.task].decoding if work.task else Decoding()
    train_rows = infer_rows = gen_rows = 0
    if work.rule in DPO_RULES:  # chosen + rejected of every pair; the reference pass over train and val first
        train_rows = 2 * hp.epochs * sizes["train"]
        infer_rows = 2 * (sizes["train"] + sizes["val"] + hp.epochs * sizes["val"])
    elif work.rule in ("preference_candidates", "judge_candidates"):
        gen_rows, infer_rows = (2 * sum(sizes.values()), 0) if stage == "generate" else (0, 2 * sum(sizes.values()))
    elif work.rule in ("reference_pair_logps", "pair_logps"):
        infer_rows = 2 * sizes["test"]
    elif stage in ("train", "train_lm"):
        key = "train" if work.rule == "train_scorer" else ("weak_train" if "weak" in work.rule else "weak_label")
        rounds = 1 + (settings.strategies[work.strategy].bootstrap_rounds if work.strategy else 0)
        train_rows = rounds * hp.epochs * sizes[key]
        infer_rows = (rounds * hp.epochs * sizes.get("val", 0) + (rounds - 1) * sizes[key]
                      + sizes.get("test", 0) * (work.rule == "train_scorer"))
    elif stage == "predict":
        infer_rows = sum(sizes.get(s, 0) for s in ("val", "test", *(("weak_label",) * (work.rule == "weak_labels"))))
    elif work.rule in ("weak_generations", "best_of_n"):
        gen_rows = (sizes.get("weak_label", 0) + sizes.get("val", 0)) * work.n
    elif work.rule == "gold_corpus":  # samples of every training prompt, and their perplexity
        gen_rows = infer_rows = _gold_texts(settings, work)
    else:
        gen_rows, infer_rows = (_eval_texts(settings, work.task), 0) if stage == "generate" else (
            0, _eval_texts(settings, work.task))
    new_tokens = decoding.max_new_tokens if gen_rows or stage == "perplexity" else 0
    training = bool(train_rows)
    eval_rows = min(hp.eval_batch_size, (sizes.get("val") if training else infer_rows) or hp.eval_batch_size)
    per_row = 2 if work.rule in DPO_RULES else 1  # DPO: a pair is two sequences
    peak = memory(shape, head, device, dtype=dtype, lora=lora, training=training, batch=hp.batch_size * per_row,
                  eval_batch=decoding.batch_size if gen_rows else eval_rows, seq=seq if gen_rows else max_length,
                  new_tokens=new_tokens if gen_rows else 0, checkpointing=checkpointing, snapshot=hp.epochs > 1,
                  data_tokens=(sum(sizes.values()) + gen_rows + infer_rows * (stage in ("score", "perplexity")))
                  * max_length)
    n_mm, (_, peak_flops, bandwidth, _) = shape.matmul_params(head), GPUS[gpu]
    k = (4 if lora else 6) + 2 * checkpointing
    flops = n_mm * (k * train_rows * seq + 2 * (infer_rows + gen_rows) * (seq + new_tokens))
    weights = weight_bytes(dtype, device, training and not lora) * shape.params(head)
    updates = math.ceil(train_rows / hp.batch_size / hp.accumulation_steps())
    seconds = (START_S + shape.params(head) * shape.file_bytes / LOAD_BPS + flops / (peak_flops * MFU)
               + math.ceil(train_rows / hp.batch_size) * STEP_S["train"]
               + math.ceil(infer_rows / hp.eval_batch_size) * STEP_S["infer"] + hours * 3600
               + math.ceil(gen_rows / decoding.batch_size) * new_tokens * max(STEP_S["decode"], weights / bandwidth)
               + updates * peak.trainable * OPTIMIZER_BYTES / bandwidth)
    return Estimate(gpus, seconds, peak, peak.trainable * 4 if training else 0.0, calls, hours)


def _gold_texts(settings: Settings, work: Work) -> int:
    sizes = settings.tasks[work.task].corpus.sizes
    return sum(sizes.get(s, 0) for s in ("weak_train", "weak_label", "val")) * work.n


def _eval_texts(settings: Settings, task: str) -> int:
    return settings.tasks[task].prompts.n * settings.tasks[task].eval_samples
