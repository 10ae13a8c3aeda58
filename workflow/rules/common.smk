# Helpers only: config checks, canonical params, code dependencies, resources. Imports stdlib only.
import ast
import functools
import json
import os
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


validate(config, "../schemas/config.schema.yaml")

SPLITS = ["weak_train", "weak_label", "val", "test"]
DEFAULT_REQUEST = {"mem_mb": 8000, "runtime": 60}  # jobs without a model entry (API scorers)
CLASSIFICATION_ONLY = {"loss", "hard_labels", "confidence_threshold", "top_fraction", "bootstrap_rounds"}
PACKAGE_DIR = Path(workflow.basedir) / "src" / "w2s_align"


def task_kind(task):
    return config["tasks"][task].get("kind", "classification")


def tasks_of(kind):
    return sorted(t for t in config["tasks"] if task_kind(t) == kind)


def task_list(task, key):
    """A task's weak_models / strong_models / student_strategies: its own list, else the top-level one."""
    return config["tasks"][task].get(key) or config[key]


def check_generation_task(name, task):
    for role in ("weak_models", "strong_models"):
        bad = [m for m in task_list(name, role) if config["models"][m]["kind"] not in ("scratch", "pretrained")]
        if bad:
            raise WorkflowError(f"config tasks.{name}.{role}: {bad} cannot generate text (generation needs scratch "
                                "or pretrained causal LMs; set the task's own weak_models / strong_models)")
    reference = task["reference_lm"]
    if reference not in config["models"] or config["models"][reference]["kind"] != "pretrained":
        raise WorkflowError(f"config tasks.{name}.reference_lm: {reference!r} is not a pretrained model under `models`")
    scorer = config["scorers"].get(task["scorer"])
    if scorer is None:
        raise WorkflowError(f"config tasks.{name}.scorer: unknown scorer {task['scorer']!r}; defined: "
                            f"{sorted(config['scorers'])}")
    if scorer["kind"] == "trained" and scorer.get("model") not in config["models"]:
        raise WorkflowError(f"config scorers.{task['scorer']}.model: unknown model {scorer.get('model')!r}")
    for strategy in task_list(name, "student_strategies"):
        spec = config["strategies"][strategy]
        unsupported = sorted(k for k, v in spec.items() if k in CLASSIFICATION_ONLY and v not in (None, False, 0, "xent"))
        if unsupported:
            raise WorkflowError(f"config tasks.{name}: strategy {strategy!r} sets {unsupported}, which only apply to "
                                "classification; give the task its own student_strategies")
        if ("best_of" in spec) != ("selector" in spec):
            raise WorkflowError(f"config strategies.{strategy}: best_of and selector go together")
        if "selector" in spec:
            if spec["selector"] not in config["scorers"]:
                raise WorkflowError(f"config strategies.{strategy}.selector: unknown scorer {spec['selector']!r}; "
                                    f"defined: {sorted(config['scorers'])}")
            if spec["selector"] == task["scorer"] and "oracle" not in strategy:
                raise WorkflowError(f"config strategies.{strategy}: selecting with the evaluation scorer "
                                    f"{task['scorer']!r} is an oracle; name the strategy so it says 'oracle' "
                                    "(e.g. best-of-4-oracle), or select with a weak scorer")
    for source in (task["corpus"]["source"], task["prompts"]["source"]):
        if not source.startswith("hf:") and not Path(source).is_file():
            raise WorkflowError(f"config tasks.{name}: data file not found: {source}")


def check_config():
    """Cross-field checks the schema cannot express; each error names the offending key."""
    for task in config["tasks"]:
        for role in ("weak_models", "strong_models"):
            unknown = [m for m in task_list(task, role) if m not in config["models"]]
            if unknown:
                raise WorkflowError(f"config {role} (task {task}): unknown model(s) {unknown}; defined models: "
                                    f"{sorted(config['models'])}")
    for name in {m for t in config["tasks"] for r in ("weak_models", "strong_models") for m in task_list(t, r)}:
        model = config["models"][name]
        if model["kind"] == "pretrained" and "path" not in model:
            raise WorkflowError(f"config models.{name}: kind 'pretrained' needs a `path`")
        if model["kind"] == "ensemble":
            members = model.get("members", [])
            bad = [m for m in members if m not in config["models"] or config["models"][m]["kind"] == "ensemble"]
            if len(members) < 2 or bad:
                raise WorkflowError(f"config models.{name}: an ensemble needs two or more non-ensemble member "
                                    f"models defined under `models` (bad: {bad or members})")
            if any(name in task_list(t, "strong_models") for t in config["tasks"]):
                raise WorkflowError(f"config strong_models: {name!r} is an ensemble, which can only be a weak model")
    for name, task in config["tasks"].items():
        unknown = [s for s in task_list(name, "student_strategies") if s not in config["strategies"]]
        if unknown:
            raise WorkflowError(f"config student_strategies (task {name}): unknown strategy(s) {unknown}; defined: "
                                f"{sorted(config['strategies'])}")
        if task_kind(name) == "generation":
            check_generation_task(name, task)
            continue
        best_of = [s for s in task_list(name, "student_strategies") if "best_of" in config["strategies"][s]]
        if best_of:
            raise WorkflowError(f"config tasks.{name}: strategies {best_of} (best-of-N) apply to generation tasks only")
        source = task["data"]["source"]
        if not source.startswith("hf:") and not Path(source).is_file():
            raise WorkflowError(f"config tasks.{name}.data.source: data file not found: {source}")


check_config()


def canonical(obj):
    """Sorted, compact JSON: the form in which structured settings reach rules as params."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def task_data(wildcards):
    return canonical(config["tasks"][wildcards.task]["data"])


def data_source(wildcards):
    source = config["tasks"][wildcards.task]["data"]["source"]
    return [] if source.startswith("hf:") else [source]


def max_length(wildcards):
    return config["tasks"][wildcards.task]["max_length"]


def model_spec(name):
    """The model's identity and architecture, without training hyperparameters."""
    return canonical({k: v for k, v in config["models"][name].items() if k not in ("train", "student", "resources")})


def train_hparams(name, role):
    """Training hyperparameters of `name` as weak, ceiling or student (student overrides apply)."""
    model = config["models"][name]
    return canonical({**model["train"], **(model["student"] if role == "student" else {})})


def strategy_spec(wildcards):
    return canonical(config["strategies"][wildcards.strategy])


def ensembles():
    return [name for name, model in config["models"].items() if model["kind"] == "ensemble"]


def names_regex(names):
    """A wildcard constraint matching exactly these names (nothing when empty)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


CLASSIFICATION = names_regex(tasks_of("classification"))  # wildcard constraint of the classification rules


def ensemble_members(wildcards):
    members = config["models"][wildcards.weak]["members"]
    return {m: f"results/{wildcards.task}/weak/{m}/seed{wildcards.seed}/weak_labels.parquet" for m in members}


def gpus(name):
    """Transformers get a GPU; TF-IDF (and no model: an API scorer) needs none."""
    return 0 if name is None or config["models"][name]["kind"] == "tfidf" else 1


def model_request(role, key, share=1.0):
    """The `resources` estimate `key` of the model named by wildcard `role` (weak or strong; or a function
    of the wildcards giving the model name), times `share`, growing with each retry (attempt 1, 2, ...)."""
    name = role if callable(role) else (lambda wildcards: wildcards[role])

    def request(wildcards, attempt):
        model = name(wildcards)
        estimate = config["models"][model]["resources"][key] if model else DEFAULT_REQUEST[key]
        return max(1, round(estimate * share)) * attempt

    return request


@functools.cache
def package_code(*modules):
    """Source files of `modules` and of every w2s_align module they import, transitively.

    Listed as rule input, so editing a module reruns exactly the stages that use it."""
    files, todo = set(), list(modules)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        path = PACKAGE_DIR.joinpath(*parts[1:])
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if not path.is_file() or path in files:
            continue
        files.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("w2s_align"):
                todo += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names if alias.name.startswith("w2s_align")]
    files.add(PACKAGE_DIR / "__init__.py")
    return sorted(os.path.relpath(f) for f in files)


def split_path(split):
    return f"results/{{task}}/splits/seed{{seed}}/{split}.parquet"


def run_identity(wildcards):
    """Identity columns of a run's metric rows."""
    return canonical({"task": wildcards.task, "weak_model": wildcards.weak, "strong_model": wildcards.strong,
                      "strategy": wildcards.strategy, "seed": int(wildcards.seed)})


def all_metrics():
    return [
        path
        for task in sorted(config["tasks"])
        for path in expand(
            "results/{task}/metrics/{weak}__{strong}/{strategy}/seed{seed}.parquet",
            task=task, weak=task_list(task, "weak_models"), strong=task_list(task, "strong_models"),
            strategy=task_list(task, "student_strategies"), seed=config["seeds"],
        )
    ]


# --- generation tasks ---

GENERATION = names_regex(tasks_of("generation"))  # wildcard constraint of the generation rules
MODEL_RUN = r"(weak|base|ceiling)/[^/]+/seed\d+|student/[^/]+/[^/]+/seed\d+"  # a model's folder in a task


def gguf_models():
    return [name for name, m in config["models"].items() if m.get("gguf_file")]


def base_files(name):
    """A GGUF model's converted folder (rule input), or nothing for hub ids and local folders."""
    if not config["models"][name].get("gguf_file"):
        return {}
    return {"base": multiext(f"results/models/{name}/", "config.json", "model.safetensors", "tokenizer.json")}


def local_dir(wildcards, input):
    """The converted folder of a GGUF model, passed to the library (None: load from the model's path)."""
    return os.path.dirname(input.base[0]) if "base" in input.keys() else None


def task_setting(key):
    return lambda wc: canonical(config["tasks"][wc.task][key])


def run_strong_model(wc):
    """Strong model of a model-run path (ceiling/<strong>/..., student/<weak>__<strong>/...)."""
    parts = wc.model_run.split("/")
    return parts[1].split("__")[-1] if parts[0] == "student" else parts[1]


def scorer_model(wc):
    """The classifier behind a trained scorer; other scorers are charged as the default model size."""
    return config["scorers"][wc.scorer].get("model") if config["scorers"][wc.scorer]["kind"] == "trained" else None


def reference_lm(wc):
    return config["tasks"][wc.task]["reference_lm"]


def scorer_files(wc):
    if config["scorers"][wc.scorer]["kind"] != "trained":
        return {}
    return {"model": f"results/scorers/{wc.scorer}/model.safetensors",
            "meta": f"results/scorers/{wc.scorer}/model.json"}


def student_targets(wc):
    """The weak continuations a student learns from: one sample each, or the best of N by a selector."""
    spec = config["strategies"][wc.strategy]
    name = f"best_of_{spec['best_of']}_{spec['selector']}" if "best_of" in spec else "weak_generations"
    return f"results/{wc.task}/weak/{wc.weak}/seed{wc.seed}/{name}.parquet"


def toxicity_inputs(wc):
    task = config["tasks"][wc.task]
    runs = {
        "weak": f"weak/{wc.weak}/seed{wc.seed}",
        "base": f"base/{wc.strong}/seed{wc.seed}",
        "w2s": f"student/{wc.weak}__{wc.strong}/{wc.strategy}/seed{wc.seed}",
        "ceiling": f"ceiling/{wc.strong}/seed{wc.seed}",
    }
    files = {}
    for role, run in runs.items():
        files |= {f"{role}_generations": f"results/{wc.task}/{run}/generations.parquet",
                  f"{role}_scores": f"results/{wc.task}/{run}/toxicity_{task['scorer']}.parquet",
                  f"{role}_perplexity": f"results/{wc.task}/{run}/perplexity.parquet"}
    if config["scorers"][task["scorer"]]["kind"] == "trained":
        files["scorer_heldout"] = f"results/scorers/{task['scorer']}/heldout.parquet"
    return files
