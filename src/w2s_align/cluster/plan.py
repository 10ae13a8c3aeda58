"""The plan of a run before it starts: from Snakemake's own DAG (every job of a run from scratch), per rule
and in total the jobs, GPU-hours, peak GPU and host memory, checkpoint disk and web-API calls and hours; per
model its parameters, trainable parameters, dtype and memory; the assumptions; and whether every model's
cluster request covers its jobs' estimates (check_requests: common.smk runs it when a run starts). Every job's
Work comes from the DAG: its rule's resources declare the kind of work and the model (request() in
common.smk). Estimates: cost.py.

    python -m w2s_align.cluster.plan [--configfile FILE ...] [--config KEY=VALUE ...] [--gpu a100|h100]
    make plan ARGS="--configfile configs/paper.yaml"
"""

from __future__ import annotations

import argparse
import math
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from w2s_align.cluster import api_quota
from w2s_align.cluster.cost import (
    FILL,
    GPUS,
    LOAD_BPS,
    MFU,
    OPTIMIZER_BYTES,
    START_S,
    STEP_S,
    Estimate,
    Work,
    describe,
    estimate,
)
from w2s_align.cluster.footprint import (
    ACT_BYTES,
    CUDA_MB,
    LOGIT_BYTES,
    MB,
    PROCESS_MB,
    model_shape,
    weight_bytes,
)
from w2s_align.errors import ConfigError
from w2s_align.settings.settings import Settings

GB = 1e9
SKIP_ENV = "W2S_NO_REQUEST_CHECK"  # set to 1 to skip check_requests (e.g. resources set on the command line)
MARGIN = 0.8  # a request fails the check below MARGIN x its estimate (the calibrated error is within 20%)


class Declared(NamedTuple):
    """What a rule declares about its jobs in its resources (request() in common.smk): the kind of work (a key
    of cost.KINDS), a function of the wildcards giving its model, and whose training settings it reads (or
    None)."""

    kind: str
    model: Callable[[Any], str | None]
    role: str | None = None
    share: float = 1.0  # the share of the model's runtime request its jobs ask for


def declared(rule) -> Declared | None:
    """A Snakemake rule's declaration: carried by the function request() gives as its cpus_per_gpu resource (a
    resource Snakemake keeps as given; sized resources such as mem_mb are wrapped)."""
    resource = rule.resources.get("cpus_per_gpu") if rule.resources else None
    return getattr(getattr(resource, "_value", resource), "work", None)


def works_of(settings: Settings, jobs: Iterable) -> list[Work | None]:
    """The Work of each Snakemake job, from its rule's declaration (None: a cheap local rule, which declares
    none)."""
    out = []
    for job in jobs:
        declared_work = declared(job.rule)
        if declared_work is None:
            out.append(None)
            continue
        kind, model, role, share = declared_work
        out.append(
            describe(
                settings, job.rule.name, kind, model(job.wildcards), dict(job.wildcards.items()), role, share
            )
        )
    return out


def dag_jobs(
    configfiles: list[str] = (), overrides: dict[str, Any] | None = None, snakefile: str = "Snakefile"
) -> tuple[Settings, list[tuple[str, dict[str, str], Work | None]]]:
    """(The Settings the workflow built from the config as Snakemake merged it (SETTINGS of common.smk),
    (rule, wildcards, Work) of every job a run from scratch would run), built by Snakemake's API from the
    Snakefile like `snakemake -n --forceall`."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        Quietness,
        ResourceSettings,
    )

    config_settings = ConfigSettings(configfiles=[Path(f) for f in configfiles], config=overrides or {})
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(), config_settings=config_settings, snakefile=Path(snakefile)
        )
        workflow_api.dag(DAGSettings(forceall=True))
        workflow = workflow_api._workflow
        workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True, nolock=True)
        workflow._build_dag()
        settings, dag = workflow.globals["SETTINGS"], list(workflow.dag.jobs)
        jobs = [
            (job.rule.name, dict(job.wildcards.items()), work)
            for job, work in zip(dag, works_of(settings, dag))
        ]
        return settings, sorted(jobs, key=lambda job: (job[0], sorted(job[1].items())))


def job_counts(jobs: list[tuple[str, dict[str, str], Work | None]]) -> dict[str, int]:
    return dict(Counter(rule for rule, *_ in jobs))


def estimates(
    settings: Settings, jobs: list[tuple[str, dict[str, str], Work | None]], gpu: str, workdir: str = "."
) -> list[tuple[str, Work | None, Estimate | None]]:
    """(rule, Work, Estimate) of every job; the local rules (splits, metrics, tables) cost nothing here."""
    cache: dict[Work, Estimate] = {}
    out = []
    for rule, _, work in jobs:
        if work is not None and work not in cache:
            cache[work] = estimate(settings, work, gpu, workdir)
        out.append((rule, work, cache.get(work)))
    return out


def fmt(value: float, unit: float = 1.0, digits: int = 1) -> str:
    return f"{value / unit:,.{digits}f}" if value else ""


def count(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def rule_table(rows: list[tuple[str, Work | None, Estimate | None]]) -> list[str]:
    """Per rule and in total: jobs, GPU jobs, GPU-hours, peak GPU and host memory, checkpoints, API volume."""
    acc: dict[str, dict[str, float]] = {}
    for rule, _, est in rows:
        entry = acc.setdefault(rule, defaultdict(float))
        entry["jobs"] += 1
        if est is not None:
            entry["gpu_jobs"] += est.gpus
            entry["gpu_h"] += est.gpus * est.seconds / 3600
            entry["cpu_h"] += (not est.gpus) * est.seconds / 3600
            entry["disk"] += est.disk
            entry["calls"] += est.api_calls
            entry["api_h"] += est.api_hours
            if est.memory is not None:
                entry["gpu_mem"] = max(entry["gpu_mem"], est.memory.gpu)
                entry["host_mem"] = max(entry["host_mem"], est.memory.host)
    total: dict[str, float] = defaultdict(float)
    for entry in acc.values():
        for key, value in entry.items():
            total[key] = max(total[key], value) if key.endswith("_mem") else total[key] + value
    lines = [
        "| rule | jobs | GPU jobs | GPU-h | no-GPU h | peak GPU GB | peak host GB | checkpoints GB | API "
        "calls | "
        "API h |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rule, e in [*sorted(acc.items(), key=lambda kv: -kv[1]["gpu_h"]), ("**total**", total)]:
        lines.append(
            f"| {rule} | {int(e['jobs'])} | {int(e['gpu_jobs']) or ''} | {fmt(e['gpu_h'])} | "
            f"{fmt(e['cpu_h'])} | {fmt(e['gpu_mem'], GB)} | {fmt(e['host_mem'], GB)} | "
            f"{fmt(e['disk'], GB)} | {fmt(e['calls'], 1, 0)} | {fmt(e['api_h'])} |"
        )
    return lines


def model_table(
    settings: Settings, rows: list[tuple[str, Work | None, Estimate | None]], workdir: str = "."
) -> list[str]:
    """Per model: parameters, trainable, frozen dtype, peak GPU memory training / inference, host,
    checkpoint."""
    peaks: dict[str, dict[str, Any]] = {}
    for _, work, est in rows:
        if work is None or est is None or est.memory is None or work.model not in settings.models:
            continue
        entry = peaks.setdefault(work.model, defaultdict(float))
        kind = "train" if est.memory.trainable else "infer"
        entry[kind] = max(entry[kind], est.memory.gpu)
        entry["host"] = max(entry["host"], est.memory.host)
        entry["trainable"] = max(entry["trainable"], est.memory.trainable)
        entry["ckpt"] = max(entry["ckpt"], est.disk if work.kind != "convert" else 0)
    lines = [
        "| model | parameters | trainable | frozen weights | peak GPU GB: training | inference | peak host "
        "GB | "
        "checkpoint per job | weights from |",
        "|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for name, e in sorted(peaks.items()):
        spec, shape = settings.models[name].spec, model_shape(settings, name, 512, workdir)
        full = not spec.lora
        dtype = "fp32" if full else {2: "bf16", 4: "fp32"}[weight_bytes(spec.dtype, "gpu", False)]
        lines.append(
            f"| {name} | {count(shape.params())} | {count(e['trainable'])}{' (full)' if full else ''} | "
            f"{dtype} | {fmt(e['train'], GB)} | {fmt(e['infer'], GB)} | {fmt(e['host'], GB)} | "
            f"{fmt(e['ckpt'], 1e6, 0)} MB | {shape.source} |"
        )
    return lines


def assumptions(gpu: str) -> list[str]:
    name, flops, bandwidth, memory_gb = GPUS[gpu]
    return [
        f"- GPU: {name}, {flops / 1e12:.0f} TFLOP/s dense bf16, {bandwidth / 1e12:.2f} TB/s, {memory_gb} GB; "
        f"MFU {MFU}. FLOPs per token: 6N full fine-tuning, 4N LoRA, +2N activation checkpointing, 2N "
        f"inference "
        "(N: parameters in matrix products).",
        f"- Per job {START_S} s start-up + weights at {LOAD_BPS / 1e9:.1f} GB/s; per micro-batch "
        f"{STEP_S['train']} s, "
        f"inference batch {STEP_S['infer']} s, decoding step max({STEP_S['decode']} s, weights / bandwidth); "
        f"per update {OPTIMIZER_BYTES} B x trainable parameters / bandwidth (AdamW, clipping). Rows average "
        f"{FILL:.0%} of their task's max_length; peak memory assumes a batch at max_length.",
        f"- GPU memory: {CUDA_MB} MB CUDA context; frozen weights in the model's dtype (auto = bf16), "
        f"trainable "
        "weights fp32 + 12 B/parameter of gradients and AdamW moments (+2 B bf16 autocast copies under full "
        f"fine-tuning); activations {ACT_BYTES['gpu']} B/value; logits {LOGIT_BYTES['gpu', 'train']} B per "
        f"token and "
        "vocabulary entry in training.",
        f"- Host memory of a GPU job: {PROCESS_MB['gpu']} MB process + max(weights as stored + converted "
        f"copy, "
        "best-epoch copy + checkpoint state + its serialised bytes) + tokenised rows. Checkpoints: LoRA "
        "runs keep "
        "adapter + head, full fine-tuning every weight (fp32). API hours: texts / qps, one job at a time "
        "per API.",
    ]


def render(
    settings: Settings,
    jobs: list[tuple[str, dict[str, str], Work | None]],
    gpu: str = "a100",
    workdir: str = ".",
    title: str = "",
) -> str:
    rows = estimates(settings, jobs, gpu, workdir)
    ests = [e for _, _, e in rows if e is not None]
    gpu_h, disk = sum(e.gpus * e.seconds for e in ests) / 3600, sum(e.disk for e in ests) / GB
    calls, api_h = sum(e.api_calls for e in ests), sum(e.api_hours for e in ests)
    problems = request_problems(settings, [work for _, _, work in jobs], workdir, gpu)
    check = (
        ["Requests: every model's mem_mb and runtime cover its jobs' estimates."]
        if not problems
        else [
            "Requests below the estimates (a run stops at start with this message):",
            *[f"- {p}" for p in problems],
        ]
    )
    return "\n".join(
        [
            f"# Plan{': ' + title if title else ''}",
            "",
            f"{len(jobs)} jobs: {gpu_h:,.1f} GPU-hours on {GPUS[gpu][0]}, {disk:,.1f} GB of checkpoints"
            + (f", {calls:,} web-API calls ({api_h:,.1f} hours)" if calls else "")
            + " (estimates; assumptions below).",
            "",
            *rule_table(rows),
            "",
            *model_table(settings, rows, workdir),
            "",
            "Assumptions:",
            *assumptions(gpu),
            "",
            *check,
            "",
        ]
    )


def request_problems(
    settings: Settings, works: Iterable[Work | None], workdir: str = ".", gpu: str = "a100"
) -> list[str]:
    """One message per model setting (models.<name>.resources.mem_mb / runtime) below MARGIN x the estimates
    of its jobs among `works` (works_of the DAG's jobs): host memory on a GPU or on the CPU, whichever is less
    (a GPU job may run on either), time on `gpu`."""
    need: dict[
        tuple[str, str], tuple[float, float, str]
    ] = {}  # (setting needed, the job's own estimate, rule)
    for work in sorted({w for w in works if w is not None}, key=str):
        # an estimate never stops a workflow: a job it cannot size goes unchecked (the plan shows the error)
        try:
            est = estimate(settings, work, gpu, workdir) if work.model in settings.models else None
            cpu = estimate(settings, work, gpu, workdir, "cpu") if est and est.memory else None
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            continue
        if cpu is None:
            continue
        share = work.share
        api = (
            est.api_calls and work.kind in api_quota.SCORING_KINDS
        )  # their runtime follows their volume (api_quota)
        minutes = 0 if api else est.seconds / 60
        host = min(est.memory.host, cpu.memory.host) / MB
        for key, value, own in (("mem_mb", host, host), ("runtime", minutes / share, minutes)):
            if value > need.get((work.model, key), (0,))[0]:
                need[(work.model, key)] = (value, own, work.rule)
    problems = []
    for (model, key), (value, own, rule) in sorted(need.items()):
        declared = getattr(settings.resources(model), key)
        if declared < MARGIN * value:
            what = (
                f"peak host memory of its {rule} jobs, {math.ceil(own)} MB"
                if key == "mem_mb"
                else f"wall time of its {rule} jobs, {math.ceil(own)} min"
                + (" (they get half the runtime)" if value > own else "")
            )
            problems.append(
                f"models.{model}.resources.{key} = {declared} is below {MARGIN:.0%} of the estimated "
                f"{what}; raise models.{model}.resources.{key} to at least {math.ceil(value)}"
            )
    return problems


def check_requests(settings: Settings, works: Iterable[Work | None], workdir: str = ".") -> None:
    """Raise one ConfigError line if a model asks for less than MARGIN x the host memory or runtime its jobs
    are estimated to need (request_problems; run by common.smk before a run's first job;
    W2S_NO_REQUEST_CHECK=1 skips it)."""
    if os.environ.get(SKIP_ENV) != "1":
        problems = request_problems(settings, works, workdir)
        if problems:
            raise ConfigError(
                "; ".join(problems)
                + f" (the plan: python -m w2s_align.cluster.plan; {SKIP_ENV}=1 skips this)"
            )


def main(argv: list[str] | None = None) -> None:
    from snakemake.cli import parse_config

    parser = argparse.ArgumentParser(
        prog="python -m w2s_align.cluster.plan", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--configfile", nargs="+", action="extend", default=[], help="as for snakemake")
    parser.add_argument(
        "--config", nargs="+", action="extend", default=[], help="KEY=VALUE, as for snakemake"
    )
    parser.add_argument("--gpu", choices=sorted(GPUS), default="a100", help="the GPU of the throughput model")
    parser.add_argument("--snakefile", default="Snakefile")
    args = parser.parse_args(argv)
    settings, jobs = dag_jobs(args.configfile, parse_config(args.config), args.snakefile)
    print(render(settings, jobs, args.gpu, ".", " + ".join(["config.yaml", *args.configfile])))


if __name__ == "__main__":
    main()
