"""Web-API scorers (Perspective) at scale: one job at a time per API (a global resource), and each job's
runtime request from the number of texts it sends. Plain Python, used by workflow/rules/common.smk and the
plan."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from typing import Any

from w2s_align.settings.settings import Settings

SCORING_KINDS = ("score", "best_of_n", "judge")  # kinds of work that query a scorer (wildcard `scorer`)
API_MARGIN = 1.2  # runtime of an API job: texts / qps x margin (retries, latency) + overhead, in minutes
API_OVERHEAD_MIN = 10


def api_kind(settings: Settings, scorer: str) -> str | None:
    """The kind of `scorer` if it queries a rate-limited web API (registered with api=True), else None."""
    from w2s_align.registry import SCORERS

    kind = settings.scorers[scorer].kind
    return kind if SCORERS.trait(kind, "api", False) else None


def api_resource(kind: str) -> str:
    """The Snakemake resource that serialises the jobs of one API kind, e.g. perspective_api."""
    return re.sub(r"\W", "_", kind) + "_api"


def api_kinds() -> list[str]:
    """Every registered API scorer kind."""
    from w2s_align.registry import SCORERS

    return [kind for kind in SCORERS.names() if SCORERS.trait(kind, "api", False)]


def scorer_qps(settings: Settings, scorer: str) -> float:
    """Requests per second of a scorer: its `qps` option, else its constructor's default (1 if it has
    none)."""
    from w2s_align.registry import SCORERS

    spec = settings.scorers[scorer].entry
    if "qps" in spec:
        return float(spec["qps"])
    param = inspect.signature(SCORERS.get(spec["kind"])).parameters.get("qps")
    return float(param.default) if param is not None and param.default is not param.empty else 1.0


def texts_to_score(settings: Settings, task: str, kind: str, best_of: int | None = None) -> int:
    """Texts that one job of a kind of work (cluster/cost.KINDS) in generation task `task` sends to its
    scorer: rows before deduplication,
    empty texts and the score cache, so an upper bound on the API calls it makes.

    - score (score_generations, every run: weak, base, ceiling, student): its continuations of the evaluation
      prompts, `prompts.n` x `eval_samples`;
    - best_of_n: `best_of` continuations of every held-out prompt the weak LM labels, (corpus sizes
      `weak_label` + `val`) x `best_of`.

    - judge (judge_candidates): both texts of every candidate pair of the preference track, 2 x
    sum(preferences.sizes).

    weak_generations samples one continuation per held-out prompt and scores none."""
    spec = settings.tasks[task]
    if kind == "judge":
        return 2 * sum(spec.preferences.sizes.values())
    if kind == "score":
        return spec.prompts.n * spec.eval_samples
    if kind == "best_of_n":
        if not best_of:
            raise ValueError("best_of_n needs best_of (N continuations per prompt)")
        sizes = spec.corpus.sizes
        return (sizes.get("weak_label", 0) + sizes.get("val", 0)) * best_of
    raise ValueError(f"work of kind {kind!r} queries no scorer; scoring kinds: {list(SCORING_KINDS)}")


def api_minutes(settings: Settings, scorer: str, texts: int) -> int:
    """Runtime request (minutes, first attempt) of an API job sending `texts` texts to `scorer`:
    texts / qps x API_MARGIN + API_OVERHEAD_MIN. The quota bounds the throughput, so this is also its wall
    time."""
    return math.ceil(texts / scorer_qps(settings, scorer) / 60 * API_MARGIN) + API_OVERHEAD_MIN


def api_scorers(settings: Settings) -> list[str]:
    """The web-API scorers the active generation tasks use: their evaluation scorer, best-of-N selectors, gold
    judges and preference judges."""
    names = set()
    for task in settings.tasks_of("generation"):
        spec = settings.tasks[task]
        names |= {spec.scorer, spec.gold.judge if spec.gold else None}
        names |= {
            settings.strategies[s].selector for s in spec.student_strategies if settings.strategies[s].best_of
        }
        prefs = spec.preferences
        names |= {prefs.gold_judge, *prefs.weak_judges} if prefs else set()
    return sorted(n for n in names if n and api_kind(settings, n))


def api_jobs(settings: Settings, works: list) -> list[dict[str, Any]]:
    """The jobs among `works` (cluster/cost.Work of every DAG job) that query a web-API scorer: dicts with
    rule, task, scorer, kind (the API's), texts (texts_to_score: an upper bound on its API calls) and minutes.
    """
    jobs = []
    for work in works:
        if work is None or work.kind not in SCORING_KINDS or not work.scorer:
            continue
        kind = api_kind(settings, work.scorer)
        if kind:
            texts = texts_to_score(
                settings, work.task, work.kind, work.n if work.kind == "best_of_n" else None
            )
            jobs.append(
                {
                    "rule": work.rule,
                    "task": work.task,
                    "scorer": work.scorer,
                    "kind": kind,
                    "texts": texts,
                    "minutes": api_minutes(settings, work.scorer, texts),
                }
            )
    return jobs


def api_volume(settings: Settings, works: list) -> dict[str, dict[str, float]]:
    """Per API kind in use: jobs, texts (upper bound on calls), api_hours (texts / qps: the wall time of all
    its jobs, which run one at a time) and runtime_hours (the sum of their first-attempt runtime requests)."""
    volume: dict[str, dict[str, float]] = {}
    for job in api_jobs(settings, works):
        entry = volume.setdefault(
            job["kind"], {"jobs": 0, "texts": 0, "api_hours": 0.0, "runtime_hours": 0.0}
        )
        entry["jobs"] += 1
        entry["texts"] += job["texts"]
        entry["api_hours"] += job["texts"] / scorer_qps(settings, job["scorer"]) / 3600
        entry["runtime_hours"] += job["minutes"] / 60
    return volume


def api_request(settings: Settings, kind: str, base: dict[str, Any]) -> dict[str, Any]:
    """Resources of the jobs of a scoring rule doing work of `kind` (SCORING_KINDS), given their model request
    `base`: one unit of the resource of
    every API kind whose scorer the job queries (0 of the others), and, for a web-API scorer, a runtime from
    the texts it sends (api_minutes; best_of_n adds its generation time), times the attempt."""

    def units(kind: str) -> Callable:
        return lambda wc: int(api_kind(settings, wc["scorer"]) == kind)

    def model_minutes(wc, attempt: int) -> int:
        fn = base["runtime"]
        if not callable(fn):
            return fn
        return fn(wc, attempt=attempt) if "attempt" in inspect.signature(fn).parameters else fn(wc)

    def runtime(wc, attempt):
        if api_kind(settings, wc["scorer"]) is None:
            return model_minutes(wc, attempt)
        best_of = int(wc["n"]) if kind == "best_of_n" else None
        minutes = api_minutes(settings, wc["scorer"], texts_to_score(settings, wc["task"], kind, best_of))
        return (minutes + (model_minutes(wc, 1) if best_of else 0)) * attempt

    return {**base, "runtime": runtime, **{api_resource(k): units(k) for k in api_kinds()}}
