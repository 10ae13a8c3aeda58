"""Every artifact's path, defined once: the templates below (with Snakemake's wildcards) are what the rules'
outputs and inputs and the library's path builders use, and `parse_run` is the one reader of a run folder's
identity. Plain Python, used by workflow/rules/common.smk at DAG time.

    results/{task}/splits|pairs/seed{seed}/...   data (classification splits, generation fine-tuning pairs)
    results/{task}/<run folder>/...                one model of one seed: checkpoint, labels, generations,
    scores results/{task}/metrics/...                     one file per run (weak, strong, strategy, seed) and
    track results/scorers, results/models, results/tables, results/plots, logs/, results/benchmarks/
"""

from __future__ import annotations

import re
from typing import Any

from w2s_align.settings.settings import Settings
from w2s_align.settings.specs import GoldSpec, ModelSpec, canonical_json


class _Keep(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(template: str, **fields: Any) -> str:
    """`template` with the given fields filled in and every other wildcard kept, e.g.
    fill(SPLIT, split="test") == "results/{task}/splits/seed{seed}/test.parquet"."""
    return template.format_map(_Keep(fields))


# --- run folders: one per model of a seed, relative to results/{task}/
# ---------------------------------------

RUN_FOLDERS = {
    "weak": "weak/{weak}/seed{seed}",
    "ceiling": "ceiling/{strong}/seed{seed}",
    "student": "student/{weak}__{strong}/{strategy}/seed{seed}",
    "base": "base/{strong}/seed{seed}",  # the untuned strong model
    "dpo-ceiling": "dpo-ceiling/{strong}/seed{seed}",
    "dpo-student": "dpo-student/{judge}__{strong}/{strategy}/seed{seed}",
    "model_run": "{model_run}",  # any of the above, as one wildcard (rules that serve every run)
}

# --- data of a task
# -------------------------------------------------------------------------------------------

SPLIT = "results/{task}/splits/seed{seed}/{split}.parquet"  # classification
PAIRS = "results/{task}/pairs/seed{seed}/{split}.parquet"  # generation fine-tuning pairs
PROMPTS = "results/{task}/prompts.parquet"  # evaluation prompts
GOLD = "results/{task}/gold.parquet"  # generated gold continuations
CANDIDATES = "results/{task}/preferences/candidates.parquet"
JUDGED = "results/{task}/preferences/judge_{scorer}.parquet"  # one judge's scores of the candidates
GOLD_TEST_PAIRS = "results/{task}/preferences/gold_test_pairs.parquet"  # the gold judge's test pairs
REFERENCE_LOGPS = "results/{task}/preferences/reference_{strong}.parquet"

# --- files of a run folder ({run}: a RUN_FOLDERS entry)
# --------------------------------------------------------

CLASSIFIER = "results/{task}/{run}/classifier.safetensors"
CLASSIFIER_META = "results/{task}/{run}/classifier.json"
LM = "results/{task}/{run}/lm.safetensors"
LM_META = "results/{task}/{run}/lm.json"
WEAK_LABELS = "results/{task}/{run}/weak_labels.parquet"
WEAK_GENERATIONS = "results/{task}/{run}/weak_generations.parquet"
BEST_OF_N = "results/{task}/{run}/best_of_{n}_{scorer}.parquet"
PREDICTIONS = "results/{task}/{run}/predictions.parquet"
GENERATIONS = "results/{task}/{run}/generations.parquet"
SCORES = "results/{task}/{run}/toxicity_{scorer}.parquet"
PERPLEXITY = "results/{task}/{run}/perplexity.parquet"
PAIR_LOGPS = "results/{task}/{run}/pair_logps.parquet"
RUN_LOG = "logs/{task}/{run}/{step}.log"
RUN_BENCHMARK = "results/benchmarks/{task}/{run}/{step}.tsv"
LOG = "logs/{name}.log"  # the log of a job that writes no run folder's files, e.g. name="{task}/gold"
BENCHMARK = "results/benchmarks/{name}.tsv"

# --- metrics, scorers, converted models, tables and plots
# -------------------------------------------------------

METRIC_SUFFIX = {"labels": "", "demonstrations": ".toxicity", "preferences": ".preference"}  # by track
METRICS = "results/{task}/metrics/{weak}__{strong}/{strategy}/seed{seed}{suffix}.parquet"
METRICS_LOG = "logs/{task}/metrics/{weak}__{strong}/{strategy}/seed{seed}{suffix}.log"
SCORER_CLASSIFIER = "results/scorers/{scorer}/classifier.safetensors"
SCORER_META = "results/scorers/{scorer}/classifier.json"
SCORER_HELDOUT = "results/scorers/{scorer}/heldout.parquet"
CONVERTED = "results/models/{gguf}/"  # converted GGUF or unpacked archive: a Hugging Face folder
CONVERTED_FILES = ("config.json", "model.safetensors", "tokenizer.json")
SUMMARY = "results/tables/summary.{ext}"
PLOT = "results/plots/{task}_{name}.png"


def run_file(template: str, role: str, **fields: Any) -> str:
    """A file of a run folder: `template` (e.g. LM) in the folder of `role` (a RUN_FOLDERS key), other fields
    filled in, e.g. run_file(LM, "ceiling", task="toxicity") ==
    "results/toxicity/ceiling/{strong}/seed{seed}/lm.safetensors"."""
    return fill(fill(template, run=RUN_FOLDERS[role]), **fields)


def parse_run(run: str) -> dict[str, str]:
    """The identity in a run folder (RUN_FOLDERS, as in the wildcard {model_run}): role, model, seed, and
    where they exist weak (or judge), strong and strategy. The model is the one whose checkpoint the folder
    holds."""
    parts = run.split("/")
    role, seed = parts[0], parts[-1].removeprefix("seed")
    if role in ("student", "dpo-student"):
        supervisor, strong = parts[1].split("__")
        key = "weak" if role == "student" else "judge"
        return {
            "role": role,
            "model": strong,
            key: supervisor,
            "strong": strong,
            "strategy": parts[2],
            "seed": seed,
        }
    key = "weak" if role == "weak" else "strong"
    return {"role": role, "model": parts[1], key: parts[1], "seed": seed}


def run_identity(
    settings: Settings, task: str, weak: str, strong: str, strategy_name: str, seed: str, track: str
) -> str:
    """Identity columns of a run's metric rows: the run, its track (labels, demonstrations, preferences: the
    kind of weak supervision) and its task's kind, so that the report is told what a run is."""
    if track not in METRIC_SUFFIX:
        raise ValueError(f"unknown track {track!r}; tracks: {list(METRIC_SUFFIX)}")
    return canonical_json(
        {
            "task": task,
            "weak_model": weak,
            "strong_model": strong,
            "strategy": strategy_name,
            "seed": int(seed),
            "track": track,
            "kind": settings.tasks[task].kind,
            "control": settings.control(task, weak, strong) if track == "labels" else "",
        }
    )


def metric_files(settings: Settings) -> list[str]:
    """Every run's metrics file of the active tasks (classification: seed<k>.parquet, generation:
    seed<k>.toxicity.parquet), controls included (Settings.student_runs)."""
    files = []
    for task in settings.active_tasks():
        spec = settings.tasks[task]
        suffix = METRIC_SUFFIX["demonstrations" if spec.kind == "generation" else "labels"]
        files += [
            fill(
                METRICS, task=task, weak=weak, strong=strong, strategy=strategy_name, seed=seed, suffix=suffix
            )
            for weak, strong, strategy_name in settings.student_runs(task)
            for seed in settings.run.seeds
        ]
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
    template = fill(BEST_OF_N, n=spec.best_of, scorer=spec.selector) if spec.best_of else WEAK_GENERATIONS
    return run_file(template, "weak", task=task, weak=weak, seed=seed)


def toxicity_inputs(
    settings: Settings, task: str, weak: str, strong: str, strategy_name: str, seed: str
) -> dict[str, str]:
    """Generations, scores and perplexities of weak / base / w2s / ceiling (+ the scorer's held-out AUROC)."""
    scorer = settings.tasks[task].scorer
    run = dict(task=task, weak=weak, strong=strong, strategy=strategy_name, seed=seed, scorer=scorer)
    files = run_outputs({"weak": "weak", "base": "base", "w2s": "student", "ceiling": "ceiling"}, run)
    if scorer_model(settings, scorer):
        files["scorer_heldout"] = fill(SCORER_HELDOUT, scorer=scorer)
    return files


def run_outputs(roles: dict[str, str], run: dict[str, Any], logps: tuple[str, ...] = ()) -> dict[str, str]:
    """Generations, scores and perplexities (and pair log-probs of the roles in `logps`) of the run folders of
    `roles` (metric role -> RUN_FOLDERS key), keyed <role>_generations etc."""
    files = {}
    for role, folder in roles.items():
        files |= {
            f"{role}_generations": run_file(GENERATIONS, folder, **run),
            f"{role}_scores": run_file(SCORES, folder, **run),
            f"{role}_perplexity": run_file(PERPLEXITY, folder, **run),
        }
        if role in logps:
            files[f"{role}_logps"] = run_file(PAIR_LOGPS, folder, **run)
    return files


def ladder_sizes(settings: Settings) -> dict[str, dict[str, str]]:
    """Task -> strong model -> the metadata of its first seed's ceiling, whose `parameters` place it on the
    ladder figure (tasks with several strong models)."""
    seed = settings.run.seeds[0]
    return {
        task: {
            strong: run_file(CLASSIFIER_META, "ceiling", task=task, strong=strong, seed=seed)
            for strong in settings.tasks[task].strong_models
        }
        for task in settings.ladder_tasks()
    }


# --- local model folders: converted GGUF files (rule convert_gguf), unpacked archives (rule unpack_archive)
# -----------------------------------------------------------------


def gguf_name(spec: ModelSpec) -> str:
    """The converted folder's name of a GGUF model entry: its path and file, so that entries sharing a GGUF
    file (a strong model, its cut-down weak twin, the reference LM) share one conversion."""
    stem = spec.gguf_file.removesuffix(".gguf")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{spec.path}--{stem}") + (
        f"@{spec.revision}" if spec.revision else ""
    )


def archive_name(spec: ModelSpec) -> str:
    """The unpacked folder's name of an archive model entry: the folder inside the archive and the archive's
    hash, so that entries sharing an archive (a classifier and a LoRA twin) share one unpacking."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", spec.path) + "@" + spec.archive["sha256"][:12]


def local_name(spec: ModelSpec) -> str | None:
    """The folder under results/models/ a pretrained model loads from; None: hub id, pypi: or local path."""
    if spec.gguf_file:
        return gguf_name(spec)
    if spec.archive:
        return archive_name(spec)
    return None


def local_folder(spec: ModelSpec) -> str | None:
    """results/models/<local_name>/ (relative to the working directory), or None."""
    name = local_name(spec)
    return fill(CONVERTED, gguf=name) if name else None


def _local_models(settings: Settings, key: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, model in settings.models.items():
        if getattr(model.spec, key):
            out.setdefault(local_name(model.spec), name)
    return out


def gguf_models(settings: Settings) -> dict[str, str]:
    """Converted folder name -> the first model entry that names it (the one convert_gguf is given)."""
    return _local_models(settings, "gguf_file")


def archive_models(settings: Settings) -> dict[str, str]:
    """Unpacked folder name -> the first model entry that names it (the one unpack_archive is given)."""
    return _local_models(settings, "archive")


def local_spec(settings: Settings, name: str) -> str:
    """convert_gguf's / unpack_archive's param: only what they read (a LoRA or `layers` edit redoes none)."""
    models = gguf_models(settings) | archive_models(settings)
    spec = settings.models[models[name]].spec
    return ModelSpec(
        spec.kind, path=spec.path, gguf_file=spec.gguf_file, archive=spec.archive, revision=spec.revision
    ).canonical()


def converted_files(settings: Settings, name: str) -> dict[str, list[str]]:
    """A model's local folder (rule input): converted GGUF or unpacked archive; nothing for hub ids and
    pypi: or local folders."""
    folder = local_folder(settings.models[name].spec)
    return {"converted": [folder + f for f in CONVERTED_FILES]} if folder else {}


# --- generated gold continuations (rule gold_corpus)
# ----------------------------------------------------------


def gold(settings: Settings, task: str) -> GoldSpec | None:
    return settings.tasks[task].gold


def gold_file(settings: Settings, task: str) -> dict[str, str]:
    """split_corpus's generated gold pairs when the task's corpus has a `gold` block (none: its own pairs)."""
    return {"gold": fill(GOLD, task=task)} if gold(settings, task) else {}


def gold_generator(settings: Settings, task: str) -> str:
    return gold(settings, task).generator


def gold_judge(settings: Settings, task: str) -> str:
    """The judge's scorer entry, canonical."""
    return canonical_json(settings.scorers[gold(settings, task).judge].entry)


def gold_inputs(settings: Settings, task: str) -> dict[str, Any]:
    """gold_corpus's model inputs: the generator's converted base (GGUF) and the judge's checkpoint
    (trained)."""
    return converted_files(settings, gold_generator(settings, task)) | scorer_checkpoint(
        settings, gold(settings, task).judge, "judge_"
    )


def scorer_checkpoint(settings: Settings, scorer: str, prefix: str = "") -> dict[str, str]:
    """A trained scorer's checkpoint files as rule inputs ({prefix}model, {prefix}meta); none for other
    kinds."""
    if not scorer_model(settings, scorer):
        return {}
    return {
        f"{prefix}model": fill(SCORER_CLASSIFIER, scorer=scorer),
        f"{prefix}meta": fill(SCORER_META, scorer=scorer),
    }


# --- the preference (DPO) track (workflow/rules/preferences.smk)
# ----------------------------------------------


def preference_files(settings: Settings) -> list[str]:
    """Every preference run's metrics file: (task, weak judge, strong model, strategy, seed)."""
    files = []
    for task in settings.preference_tasks():
        prefs = settings.tasks[task].preferences
        files += [
            fill(
                METRICS,
                task=task,
                weak=judge,
                strong=strong,
                strategy=name,
                seed=seed,
                suffix=METRIC_SUFFIX["preferences"],
            )
            for judge in prefs.weak_judges
            for strong in settings.preference_policies(task)
            for name in prefs.strategies
            for seed in settings.run.seeds
        ]
    return files


def candidate_settings(settings: Settings, task: str) -> str:
    """What the candidates depend on (not the judges or strategies): the generator, samples, sizes and
    seed."""
    prefs = settings.tasks[task].preferences
    return canonical_json(
        {"generator": prefs.generator, "samples": prefs.samples, "sizes": prefs.sizes, "seed": prefs.seed}
    )


def preference_setting(settings: Settings, task: str, key: str) -> Any:
    return getattr(settings.tasks[task].preferences, key)


def judge_file(task: str, judge: str) -> str:
    return fill(JUDGED, task=task, scorer=judge)


def gold_judge_file(settings: Settings, task: str) -> str:
    return judge_file(task, preference_setting(settings, task, "gold_judge"))


def preference_inputs(
    settings: Settings, task: str, judge: str, strong: str, strategy_name: str, seed: str
) -> dict[str, str]:
    """The weak judge's preferences, the pair log-probs of reference / student / ceiling and the generations,
    scores and perplexities of base / student / ceiling (the gold test pairs: rule gold_test_pairs)."""
    run = dict(
        task=task,
        judge=judge,
        strong=strong,
        strategy=strategy_name,
        seed=seed,
        scorer=settings.tasks[task].scorer,
    )
    files = {
        "weak_judged": judge_file(task, judge),
        "reference_logps": fill(REFERENCE_LOGPS, task=task, strong=strong),
    }
    return files | run_outputs(
        {"base": "base", "w2s": "dpo-student", "ceiling": "dpo-ceiling"}, run, logps=("w2s", "ceiling")
    )
