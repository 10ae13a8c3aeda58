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
PACKAGE_DIR = Path(workflow.basedir) / "src" / "w2s_align"


def check_config():
    """Cross-field checks the schema cannot express; each error names the offending key."""
    for role in ("weak_models", "strong_models"):
        unknown = [m for m in config[role] if m not in config["models"]]
        if unknown:
            raise WorkflowError(f"config {role}: unknown model(s) {unknown}; defined models: {sorted(config['models'])}")
    for name in {*config["weak_models"], *config["strong_models"]}:
        model = config["models"][name]
        if model["kind"] == "pretrained" and "path" not in model:
            raise WorkflowError(f"config models.{name}: kind 'pretrained' needs a `path`")
        if model["kind"] == "ensemble":
            members = model.get("members", [])
            bad = [m for m in members if m not in config["models"] or config["models"][m]["kind"] == "ensemble"]
            if len(members) < 2 or bad:
                raise WorkflowError(f"config models.{name}: an ensemble needs two or more non-ensemble member "
                                    f"models defined under `models` (bad: {bad or members})")
            if name in config["strong_models"]:
                raise WorkflowError(f"config strong_models: {name!r} is an ensemble, which can only be a weak model")
    unknown = [s for s in config["student_strategies"] if s not in config["strategies"]]
    if unknown:
        raise WorkflowError(f"config student_strategies: unknown strategy(s) {unknown}; defined: {sorted(config['strategies'])}")
    for name, task in config["tasks"].items():
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


def ensemble_members(wildcards):
    members = config["models"][wildcards.weak]["members"]
    return {m: f"results/{wildcards.task}/weak/{m}/seed{wildcards.seed}/weak_labels.parquet" for m in members}


def gpus(name):
    """Transformers get a GPU; TF-IDF needs none."""
    return 0 if config["models"][name]["kind"] == "tfidf" else 1


def model_request(role, key, share=1.0):
    """The `resources` estimate `key` of the model named by wildcard `role` (weak or strong), times
    `share`, growing with each retry (attempt 1, 2, ...)."""
    return lambda wildcards, attempt: max(1, round(config["models"][wildcards[role]]["resources"][key] * share)) * attempt


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
    return expand(
        "results/{task}/metrics/{weak}__{strong}/{strategy}/seed{seed}.parquet",
        task=sorted(config["tasks"]), weak=config["weak_models"], strong=config["strong_models"],
        strategy=config["student_strategies"], seed=config["seeds"],
    )
