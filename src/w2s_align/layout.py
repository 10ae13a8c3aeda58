"""What the workflow builds from a config: the metric files of every run, a generation run's inputs, and the
GPUs of a job. Plain Python, used by workflow/rules/common.smk."""

from __future__ import annotations

from typing import Any

from w2s_align.config import active_tasks, run_settings, strategy, task_kind, task_list
from w2s_align.specs import canonical_json


def run_identity(config: dict[str, Any], task: str, weak: str, strong: str, strategy_name: str, seed: str) -> str:
    """Identity columns of a run's metric rows."""
    return canonical_json({"task": task, "weak_model": weak, "strong_model": strong, "strategy": strategy_name,
                           "seed": int(seed)})


def metric_files(config: dict[str, Any]) -> list[str]:
    """Every run's metrics file of the active tasks (classification: seed<k>.parquet, generation:
    seed<k>.toxicity.parquet)."""
    files = []
    for task in active_tasks(config):
        suffix = ".toxicity" if task_kind(config, task) == "generation" else ""
        for weak in task_list(config, task, "weak_models"):
            for strong in task_list(config, task, "strong_models"):
                for strategy_name in task_list(config, task, "student_strategies"):
                    files += [f"results/{task}/metrics/{weak}__{strong}/{strategy_name}/seed{seed}{suffix}.parquet"
                              for seed in run_settings(config).seeds]
    return files


def gpus(config: dict[str, Any], model: str | None) -> int:
    """GPUs of a job running `model`: none for kinds registered with gpu=False (TF-IDF) or without a model."""
    from w2s_align.registry import CLASSIFIER_KINDS

    if model is None:
        return 0
    kind = config["models"][model]["kind"]
    return int(CLASSIFIER_KINDS.trait(kind, "gpu", True)) if kind in CLASSIFIER_KINDS else 1


def scorer_model(config: dict[str, Any], scorer: str) -> str | None:
    """The classifier behind a scorer that the pipeline trains; None for API and hub scorers."""
    from w2s_align.registry import SCORERS

    spec = run_settings(config).scorers[scorer]
    return spec.get("model") if SCORERS.trait(spec["kind"], "checkpoint", False) else None


def scorer_gpus(config: dict[str, Any], scorer: str) -> int:
    from w2s_align.registry import SCORERS

    model = scorer_model(config, scorer)
    return gpus(config, model) if model else int(SCORERS.trait(run_settings(config).scorers[scorer]["kind"], "gpu",
                                                                  False))


def student_targets(config: dict[str, Any], task: str, weak: str, strategy_name: str, seed: str) -> str:
    """The weak continuations a generation student learns from: one sample each, or the best of N."""
    spec = strategy(config, strategy_name)
    name = f"best_of_{spec.best_of}_{spec.selector}" if spec.best_of else "weak_generations"
    return f"results/{task}/weak/{weak}/seed{seed}/{name}.parquet"


def toxicity_inputs(config: dict[str, Any], task: str, weak: str, strong: str, strategy_name: str,
                    seed: str) -> dict[str, str]:
    """Generations, scores and perplexities of weak / base / w2s / ceiling (+ the scorer's held-out AUROC)."""
    scorer = config["tasks"][task]["scorer"]
    runs = {"weak": f"weak/{weak}/seed{seed}", "base": f"base/{strong}/seed{seed}",
            "w2s": f"student/{weak}__{strong}/{strategy_name}/seed{seed}", "ceiling": f"ceiling/{strong}/seed{seed}"}
    files = {}
    for role, run in runs.items():
        files |= {f"{role}_generations": f"results/{task}/{run}/generations.parquet",
                  f"{role}_scores": f"results/{task}/{run}/toxicity_{scorer}.parquet",
                  f"{role}_perplexity": f"results/{task}/{run}/perplexity.parquet"}
    if scorer_model(config, scorer):
        files["scorer_heldout"] = f"results/scorers/{scorer}/heldout.parquet"
    return files
