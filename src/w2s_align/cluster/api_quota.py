"""Web-API scorers (Perspective) at scale: one job at a time per API (a global resource), and each job's runtime
request from the number of texts it sends. Plain Python, used by workflow/rules/common.smk and the plan."""

from __future__ import annotations

import inspect
import math
import re
from itertools import product
from typing import Any, Callable

from w2s_align.settings.settings import Settings
from w2s_align.settings.paths import judge_file, preference_inputs, student_targets, toxicity_inputs

SCORING_RULES = ("score_generations", "best_of_n", "judge_candidates")  # rules that query a scorer (wildcard `scorer`)
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
    """Requests per second of a scorer: its `qps` option, else its constructor's default (1 if it has none)."""
    from w2s_align.registry import SCORERS

    spec = settings.scorers[scorer].entry
    if "qps" in spec:
        return float(spec["qps"])
    param = inspect.signature(SCORERS.get(spec["kind"])).parameters.get("qps")
    return float(param.default) if param is not None and param.default is not param.empty else 1.0


def texts_to_score(settings: Settings, task: str, rule: str, best_of: int | None = None) -> int:
    """Texts that one job of `rule` in generation task `task` sends to its scorer: rows before deduplication,
    empty texts and the score cache, so an upper bound on the API calls it makes.

    - score_generations (every run: weak, base, ceiling, student): its continuations of the evaluation
      prompts, `prompts.n` x `eval_samples`;
    - best_of_n: `best_of` continuations of every held-out prompt the weak LM labels, (corpus sizes
      `weak_label` + `val`) x `best_of`.

    - judge_candidates: both texts of every candidate pair of the preference track, 2 x sum(preferences.sizes).

    weak_generations samples one continuation per held-out prompt and scores none."""
    spec = settings.tasks[task]
    if rule == "judge_candidates":
        return 2 * sum(spec.preferences.sizes.values())
    if rule == "score_generations":
        return spec.prompts.n * spec.eval_samples
    if rule == "best_of_n":
        if not best_of:
            raise ValueError("best_of_n needs best_of (N continuations per prompt)")
        sizes = spec.corpus.sizes
        return (sizes.get("weak_label", 0) + sizes.get("val", 0)) * best_of
    raise ValueError(f"rule {rule!r} queries no scorer; scoring rules: {list(SCORING_RULES)}")


def api_minutes(settings: Settings, scorer: str, texts: int) -> int:
    """Runtime request (minutes, first attempt) of an API job sending `texts` texts to `scorer`:
    texts / qps x API_MARGIN + API_OVERHEAD_MIN. The quota bounds the throughput, so this is also its wall time."""
    return math.ceil(texts / scorer_qps(settings, scorer) / 60 * API_MARGIN) + API_OVERHEAD_MIN


def api_jobs(settings: Settings) -> list[dict[str, Any]]:
    """Every job of the active tasks that queries a web-API scorer, sorted by output: dicts with rule, output,
    task, scorer, kind, texts (texts_to_score: an upper bound on its API calls) and minutes (api_minutes)."""
    jobs: dict[str, dict[str, Any]] = {}

    def add(rule: str, output: str, task: str, scorer: str | None, best_of: int | None = None) -> None:
        kind = api_kind(settings, scorer) if scorer else None
        if kind and output not in jobs:
            texts = texts_to_score(settings, task, rule, best_of)
            jobs[output] = {"rule": rule, "output": output, "task": task, "scorer": scorer, "kind": kind,
                            "texts": texts, "minutes": api_minutes(settings, scorer, texts)}

    for task in settings.tasks_of("generation"):
        spec, scorer = settings.tasks[task], settings.tasks[task].scorer
        for weak in spec.weak_models:
            for strong in spec.strong_models:
                for name in spec.student_strategies:
                    for seed in map(str, settings.run.seeds):
                        files = toxicity_inputs(settings, task, weak, strong, name, seed)
                        for key in ("weak_scores", "base_scores", "w2s_scores", "ceiling_scores"):
                            add("score_generations", files[key], task, scorer)
                        chosen = settings.strategies[name]
                        add("best_of_n", student_targets(settings, task, weak, name, seed), task, chosen.selector,
                            chosen.best_of)
        prefs = spec.preferences
        if prefs:
            for judge in [prefs.gold_judge, *prefs.weak_judges]:
                add("judge_candidates", judge_file(task, judge), task, judge)
            seeds = map(str, settings.run.seeds)
            for run in product(prefs.weak_judges, settings.preference_policies(task), prefs.strategies, seeds):
                files = preference_inputs(settings, task, *run)
                for key in ("base_scores", "w2s_scores", "ceiling_scores"):
                    add("score_generations", files[key], task, scorer)
    return [jobs[k] for k in sorted(jobs)]


def api_volume(settings: Settings) -> dict[str, dict[str, float]]:
    """Per API kind in use: jobs, texts (upper bound on calls), api_hours (texts / qps: the wall time of all
    its jobs, which run one at a time) and runtime_hours (the sum of their first-attempt runtime requests)."""
    volume: dict[str, dict[str, float]] = {}
    for job in api_jobs(settings):
        entry = volume.setdefault(job["kind"], {"jobs": 0, "texts": 0, "api_hours": 0.0, "runtime_hours": 0.0})
        entry["jobs"] += 1
        entry["texts"] += job["texts"]
        entry["api_hours"] += job["texts"] / scorer_qps(settings, job["scorer"]) / 3600
        entry["runtime_hours"] += job["minutes"] / 60
    return volume


def api_request(settings: Settings, rule: str, base: dict[str, Any]) -> dict[str, Any]:
    """Resources of the jobs of a scoring rule, given their model request `base`: one unit of the resource of
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
        best_of = int(wc["n"]) if rule == "best_of_n" else None
        minutes = api_minutes(settings, wc["scorer"], texts_to_score(settings, wc["task"], rule, best_of))
        return (minutes + (model_minutes(wc, 1) if best_of else 0)) * attempt

    return {**base, "runtime": runtime, **{api_resource(k): units(k) for k in api_kinds()}}
