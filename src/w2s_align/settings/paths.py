"""What the workflow builds from a config: the metric files of every run, a generation run's inputs, the
GPUs of a job, converted GGUF folders and generated gold inputs (web-API scoring jobs: webapi.py). Plain Python,
used by workflow/rules/common.smk."""

from __future__ import annotations

import re
from typing import Any

from w2s_align.settings.settings import ModelSettings, Settings
from w2s_align.settings.specs import GoldSpec, ModelSpec, canonical_json


def run_identity(settings: Settings, task: str, weak: str, strong: str, strategy_name: str, seed: str) -> str:
    """Identity columns of a run's metric rows."""
    return canonical_json({"task": task, "weak_model": weak, "strong_model": strong, "strategy": strategy_name,
                           "seed": int(seed)})


def metric_files(settings: Settings) -> list[str]:
    """Every run's metrics file of the active tasks (classification: seed<k>.parquet, generation:
    seed<k>.toxicity.parquet)."""
    files = []
    for task in settings.active_tasks():
        spec = settings.tasks[task]
        suffix = ".toxicity" if spec.kind == "generation" else ""
        for weak in spec.weak_models:
            for strong in spec.strong_models:
                for strategy_name in spec.student_strategies:
                    files += [f"results/{task}/metrics/{weak}__{strong}/{strategy_name}/seed{seed}{suffix}.parquet"
                              for seed in settings.run.seeds]
    return files


def gpus(settings: Settings, model: str | None) -> int:
    """GPUs of a job running `model`: none for kinds registered with gpu=False (TF-IDF) or without a model."""
    from w2s_align.registry import CLASSIFIER_KINDS

    if model is None:
        return 0
    kind = settings.models[model].spec.kind
    return int(CLASSIFIER_KINDS.trait(kind, "gpu", True)) if kind in CLASSIFIER_KINDS else 1


def scorer_model(settings: Settings, scorer: str) -> str | None:
    """The classifier behind a scorer that the pipeline trains; None for API and hub scorers."""
    from w2s_align.registry import SCORERS

    spec = settings.scorers[scorer]
    return spec.model if SCORERS.trait(spec.kind, "checkpoint", False) else None


def scorer_gpus(settings: Settings, scorer: str) -> int:
    from w2s_align.registry import SCORERS

    model = scorer_model(settings, scorer)
    return gpus(settings, model) if model else int(SCORERS.trait(settings.scorers[scorer].kind, "gpu", False))


def student_targets(settings: Settings, task: str, weak: str, strategy_name: str, seed: str) -> str:
    """The weak continuations a generation student learns from: one sample each, or the best of N."""
    spec = settings.strategies[strategy_name]
    name = f"best_of_{spec.best_of}_{spec.selector}" if spec.best_of else "weak_generations"
    return f"results/{task}/weak/{weak}/seed{seed}/{name}.parquet"


def toxicity_inputs(settings: Settings, task: str, weak: str, strong: str, strategy_name: str,
                    seed: str) -> dict[str, str]:
    """Generations, scores and perplexities of weak / base / w2s / ceiling (+ the scorer's held-out AUROC)."""
    scorer = settings.tasks[task].scorer
    runs = {"weak": f"weak/{weak}/seed{seed}", "base": f"base/{strong}/seed{seed}",
            "w2s": f"student/{weak}__{strong}/{strategy_name}/seed{seed}", "ceiling": f"ceiling/{strong}/seed{seed}"}
    files = {}
    for role, run in runs.items():
        files |= {f"{role}_generations": f"results/{task}/{run}/generations.parquet",
                  f"{role}_scores": f"results/{task}/{run}/toxicity_{scorer}.parquet",
                  f"{role}_perplexity": f"results/{task}/{run}/perplexity.parquet"}
    if scorer_model(settings, scorer):
        files["scorer_heldout"] = f"results/scorers/{scorer}/heldout.parquet"
    return files


# --- converted GGUF models (rule convert_gguf) -----------------------------------------------------------------


CONVERTED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def gguf_name(model: ModelSettings) -> str:
    """The converted folder's name of a GGUF model entry: its path and file, so that entries sharing a GGUF file
    (a strong model, its cut-down weak twin, the reference LM) share one conversion."""
    spec = model.spec
    stem = spec.gguf_file.removesuffix(".gguf")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{spec.path}--{stem}") + (f"@{spec.revision}" if spec.revision else "")


def gguf_models(settings: Settings) -> dict[str, str]:
    """Converted folder name -> the first model entry that names it (the one convert_gguf is given)."""
    out: dict[str, str] = {}
    for name, model in settings.models.items():
        if model.spec.gguf_file:
            out.setdefault(gguf_name(model), name)
    return out


def gguf_spec(settings: Settings, gguf: str) -> str:
    """convert_gguf's param: only what the conversion reads (a LoRA or `layers` edit does not reconvert)."""
    spec = settings.models[gguf_models(settings)[gguf]].spec
    return ModelSpec(spec.kind, path=spec.path, gguf_file=spec.gguf_file, revision=spec.revision).canonical()


def base_files(settings: Settings, name: str) -> dict[str, list[str]]:
    """A GGUF model's converted folder (rule input), or nothing for hub ids and local folders."""
    model = settings.models[name]
    if not model.spec.gguf_file:
        return {}
    return {"base": [f"results/models/{gguf_name(model)}/{f}" for f in CONVERTED_FILES]}


# --- generated gold continuations (rule gold_corpus) ----------------------------------------------------------


def gold(settings: Settings, task: str) -> GoldSpec | None:
    return settings.tasks[task].gold


def gold_file(settings: Settings, task: str) -> dict[str, str]:
    """split_corpus's generated gold pairs when the task's corpus has a `gold` block (none: its own pairs)."""
    return {"gold": f"results/{task}/gold.parquet"} if gold(settings, task) else {}


def gold_generator(settings: Settings, task: str) -> str:
    return gold(settings, task).generator


def gold_judge(settings: Settings, task: str) -> str:
    """The judge's scorer entry, canonical."""
    return canonical_json(settings.scorers[gold(settings, task).judge].entry)


def gold_inputs(settings: Settings, task: str) -> dict[str, Any]:
    """gold_corpus's model inputs: the generator's converted base (GGUF) and the judge's checkpoint (trained)."""
    return base_files(settings, gold_generator(settings, task)) | scorer_checkpoint(
        settings, gold(settings, task).judge, "judge_")


def scorer_checkpoint(settings: Settings, scorer: str, prefix: str = "") -> dict[str, str]:
    """A trained scorer's checkpoint files as rule inputs ({prefix}model, {prefix}meta); none for other kinds."""
    if not scorer_model(settings, scorer):
        return {}
    folder = f"results/scorers/{scorer}"
    return {f"{prefix}model": f"{folder}/classifier.safetensors", f"{prefix}meta": f"{folder}/classifier.json"}



# --- the preference (DPO) track (workflow/rules/preferences.smk) ----------------------------------------------


def preference_files(settings: Settings) -> list[str]:
    """Every preference run's metrics file: (task, weak judge, strong model, strategy, seed)."""
    files = []
    for task in settings.preference_tasks():
        prefs = settings.tasks[task].preferences
        files += [f"results/{task}/metrics/{judge}__{strong}/{name}/seed{seed}.preference.parquet"
                  for judge in prefs.weak_judges for strong in settings.preference_policies(task)
                  for name in prefs.strategies for seed in settings.run.seeds]
    return files


def candidate_settings(settings: Settings, task: str) -> str:
    """What the candidates depend on (not the judges or strategies): the generator, samples, sizes and seed."""
    prefs = settings.tasks[task].preferences
    return canonical_json({"generator": prefs.generator, "samples": prefs.samples, "sizes": prefs.sizes,
                           "seed": prefs.seed})


def preference_setting(settings: Settings, task: str, key: str) -> Any:
    return getattr(settings.tasks[task].preferences, key)


def judge_file(task: str, judge: str) -> str:
    return f"results/{task}/preferences/judge_{judge}.parquet"


def gold_judge_file(settings: Settings, task: str) -> str:
    return judge_file(task, preference_setting(settings, task, "gold_judge"))


def preference_inputs(settings: Settings, task: str, weak: str, strong: str, strategy_name: str,
                      seed: str) -> dict[str, str]:
    """Candidates, both judges' preferences, the pair log-probs of reference / student / ceiling and the
    generations, scores and perplexities of base / student / ceiling."""
    scorer = settings.tasks[task].scorer
    runs = {"base": f"base/{strong}/seed{seed}", "w2s": f"dpo-student/{weak}__{strong}/{strategy_name}/seed{seed}",
            "ceiling": f"dpo-ceiling/{strong}/seed{seed}"}
    files = {"candidates": f"results/{task}/preferences/candidates.parquet",
             "gold_judged": gold_judge_file(settings, task), "weak_judged": judge_file(task, weak),
             "reference_logps": f"results/{task}/preferences/reference_{strong}.parquet"}
    for role, run in runs.items():
        files |= {f"{role}_generations": f"results/{task}/{run}/generations.parquet",
                  f"{role}_scores": f"results/{task}/{run}/toxicity_{scorer}.parquet",
                  f"{role}_perplexity": f"results/{task}/{run}/perplexity.parquet"}
        if role != "base":
            files[f"{role}_logps"] = f"results/{task}/{run}/pair_logps.parquet"
    return files
