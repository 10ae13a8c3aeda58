"""What the workflow builds from a config: the metric files of every run, a generation run's inputs, the
GPUs of a job, converted GGUF folders and generated gold inputs (web-API scoring jobs: webapi.py). Plain Python,
used by workflow/rules/common.smk."""

from __future__ import annotations

import re
from typing import Any

from w2s_align.settings.settings import active_tasks, preference_policies, preference_tasks, preferences, run_settings, strategy, task_kind, task_list
from w2s_align.settings.specs import ModelSpec, canonical_json


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


# --- converted GGUF models (rule convert_gguf) -----------------------------------------------------------------


CONVERTED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def gguf_name(model: dict[str, Any]) -> str:
    """The converted folder's name of a GGUF model entry: its path and file, so that entries sharing a GGUF file
    (a strong model, its cut-down weak twin, the reference LM) share one conversion."""
    stem = model["gguf_file"].removesuffix(".gguf")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{model['path']}--{stem}") + (f"@{model['revision']}"
                                                                            if model.get("revision") else "")


def gguf_models(config: dict[str, Any]) -> dict[str, str]:
    """Converted folder name -> the first model entry that names it (the one convert_gguf is given)."""
    out: dict[str, str] = {}
    for name, model in config["models"].items():
        if model.get("gguf_file"):
            out.setdefault(gguf_name(model), name)
    return out


def gguf_spec(config: dict[str, Any], gguf: str) -> str:
    """convert_gguf's param: only what the conversion reads (a LoRA or `layers` edit does not reconvert)."""
    model = config["models"][gguf_models(config)[gguf]]
    keep = {k: model[k] for k in ("kind", "path", "gguf_file", "revision") if model.get(k) is not None}
    return ModelSpec.from_dict(keep).canonical()


def base_files(config: dict[str, Any], name: str) -> dict[str, list[str]]:
    """A GGUF model's converted folder (rule input), or nothing for hub ids and local folders."""
    model = config["models"][name]
    if not model.get("gguf_file"):
        return {}
    return {"base": [f"results/models/{gguf_name(model)}/{f}" for f in CONVERTED_FILES]}


# --- generated gold continuations (rule gold_corpus) ----------------------------------------------------------


def gold(config: dict[str, Any], task: str) -> dict[str, Any]:
    return config["tasks"][task]["corpus"].get("gold") or {}


def gold_file(config: dict[str, Any], task: str) -> dict[str, str]:
    """split_corpus's generated gold pairs when the task's corpus has a `gold` block (none: its own pairs)."""
    return {"gold": f"results/{task}/gold.parquet"} if gold(config, task) else {}


def gold_generator(config: dict[str, Any], task: str) -> str:
    return gold(config, task)["generator"]


def gold_judge(config: dict[str, Any], task: str) -> str:
    """The judge's scorer entry, canonical."""
    return canonical_json(run_settings(config).scorers[gold(config, task)["judge"]])


def gold_inputs(config: dict[str, Any], task: str) -> dict[str, Any]:
    """gold_corpus's model inputs: the generator's converted base (GGUF) and the judge's checkpoint (trained)."""
    return base_files(config, gold_generator(config, task)) | scorer_checkpoint(config, gold(config, task)["judge"],
                                                                               "judge_")


def scorer_checkpoint(config: dict[str, Any], scorer: str, prefix: str = "") -> dict[str, str]:
    """A trained scorer's checkpoint files as rule inputs ({prefix}model, {prefix}meta); none for other kinds."""
    if not scorer_model(config, scorer):
        return {}
    folder = f"results/scorers/{scorer}"
    return {f"{prefix}model": f"{folder}/classifier.safetensors", f"{prefix}meta": f"{folder}/classifier.json"}



# --- the preference (DPO) track (workflow/rules/preferences.smk) ----------------------------------------------


def preference_files(config: dict[str, Any]) -> list[str]:
    """Every preference run's metrics file: (task, weak judge, strong model, strategy, seed)."""
    files = []
    for task in preference_tasks(config):
        prefs = preferences(config, task)
        files += [f"results/{task}/metrics/{judge}__{strong}/{name}/seed{seed}.preference.parquet"
                  for judge in prefs.weak_judges for strong in preference_policies(config, task)
                  for name in prefs.strategies for seed in run_settings(config).seeds]
    return files


def candidate_settings(config: dict[str, Any], task: str) -> str:
    """What the candidates depend on (not the judges or strategies): the generator, samples, sizes and seed."""
    prefs = preferences(config, task)
    return canonical_json({"generator": prefs.generator, "samples": prefs.samples, "sizes": prefs.sizes,
                           "seed": prefs.seed})


def preference_setting(config: dict[str, Any], task: str, key: str) -> Any:
    return getattr(preferences(config, task), key)


def judge_file(task: str, judge: str) -> str:
    return f"results/{task}/preferences/judge_{judge}.parquet"


def gold_judge_file(config: dict[str, Any], task: str) -> str:
    return judge_file(task, preference_setting(config, task, "gold_judge"))


def preference_inputs(config: dict[str, Any], task: str, weak: str, strong: str, strategy_name: str,
                      seed: str) -> dict[str, str]:
    """Candidates, both judges' preferences, the pair log-probs of reference / student / ceiling and the
    generations, scores and perplexities of base / student / ceiling."""
    scorer = config["tasks"][task]["scorer"]
    runs = {"base": f"base/{strong}/seed{seed}", "w2s": f"dpo-student/{weak}__{strong}/{strategy_name}/seed{seed}",
            "ceiling": f"dpo-ceiling/{strong}/seed{seed}"}
    files = {"candidates": f"results/{task}/preferences/candidates.parquet",
             "gold_judged": gold_judge_file(config, task), "weak_judged": judge_file(task, weak),
             "reference_logps": f"results/{task}/preferences/reference_{strong}.parquet"}
    for role, run in runs.items():
        files |= {f"{role}_generations": f"results/{task}/{run}/generations.parquet",
                  f"{role}_scores": f"results/{task}/{run}/toxicity_{scorer}.parquet",
                  f"{role}_perplexity": f"results/{task}/{run}/perplexity.parquet"}
        if role != "base":
            files[f"{role}_logps"] = f"results/{task}/{run}/pair_logps.parquet"
    return files
