# Helpers only: config checks, canonical params, code fingerprints, paths and resources (no torch).
import os
import re

from snakemake.exceptions import WorkflowError

from w2s_align import config as w2s
from w2s_align.fingerprint import code_fingerprint

BASE = workflow.basedir
try:
    w2s.validate(config, os.path.join(BASE, "workflow/schemas/config.schema.yaml"))
    w2s.check_config(config)
except w2s.ConfigError as error:
    raise WorkflowError(str(error)) from None

RUN = w2s.run_settings(config)
TASKS = w2s.active_tasks(config)
SPLITS = ["weak_train", "weak_label", "val", "test"]
PAIRS = ["weak_train", "weak_label", "val"]
DEFAULT_REQUEST = w2s.Resources()  # jobs without a model (API scorers)


def code(script):
    """Fingerprint of the library code `script` runs (docstrings and comments do not count)."""
    return code_fingerprint(os.path.join(BASE, "src/w2s_align"), os.path.join(BASE, "workflow/scripts", script))


# --- config lookups by wildcard ---


def task(wc):
    return config["tasks"][wc.task]


def max_length(wc):
    return task(wc)["max_length"]


def weak_spec(wc):
    return w2s.model_spec(config, wc.weak)


def strong_spec(wc):
    return w2s.model_spec(config, wc.strong)


def hparams(role):
    model = "weak" if role == "weak" else "strong"
    return lambda wc: w2s.train_hparams(config, wc[model], role)


def strategy_spec(wc):
    return w2s.strategy(config, wc.strategy).canonical()


def decoding(wc):
    return w2s.decoding(config, wc.task)


def eval_samples(wc):
    return w2s.task_settings(config, wc.task).eval_samples


def task_block(key, spec):
    return lambda wc: w2s.canonical(spec, task(wc)[key])


def local_files(*sources):
    return [s for s in sources if w2s.is_local(s)]


def run_identity(wc):
    """Identity columns of a run's metric rows."""
    return w2s.params_string({"task": wc.task, "weak_model": wc.weak, "strong_model": wc.strong,
                              "strategy": wc.strategy, "seed": int(wc.seed)})


# --- paths ---


def split_path(split):
    return f"results/{{task}}/splits/seed{{seed}}/{split}.parquet"


def pair_path(split):
    return f"results/{{task}}/pairs/seed{{seed}}/{split}.parquet"


def names_regex(names):
    """A wildcard constraint matching exactly these names (nothing when empty)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def ensembles():
    return [n for n, m in config["models"].items() if m["kind"] == "ensemble"]


def ensemble_members(wc):
    members = config["models"][wc.weak]["members"]
    return {m: f"results/{wc.task}/weak/{m}/seed{wc.seed}/weak_labels.parquet" for m in members}


def gguf_models():
    return [n for n, m in config["models"].items() if m.get("gguf_file")]


def base_files(name):
    """A GGUF model's converted folder (rule input), or nothing for hub ids and local folders."""
    if not config["models"][name].get("gguf_file"):
        return {}
    return {"base": multiext(f"results/models/{name}/", "config.json", "model.safetensors", "tokenizer.json")}


def strong_base(wc):
    return base_files(wc.strong)


def run_strong_model(wc):
    """Strong model of a model-run path (ceiling/<strong>/..., student/<weak>__<strong>/...); the weak
    model of weak/<weak>/..."""
    parts = wc.model_run.split("/")
    return parts[1].split("__")[-1] if parts[0] == "student" else parts[1]


def run_base(wc):
    return {} if wc.model_run.startswith("weak/") else base_files(run_strong_model(wc))


def run_seed(wc):
    return wc.model_run.rsplit("seed", 1)[1]


def local_dir(wc, input):
    """The converted folder of a GGUF model, passed to the library (None: load from the model's path)."""
    return os.path.dirname(input.base[0]) if "base" in input.keys() else None


def reference_lm(wc):
    return task(wc)["reference_lm"]


def reference_base(wc):
    return base_files(reference_lm(wc))


def scorer_model(wc):
    """The classifier behind a trained scorer; other scorers are charged as the default model size."""
    return RUN.scorers[wc.scorer].get("model") if scorer_kind(wc) == "trained" else None


def scorer_kind(wc):
    return RUN.scorers[wc.scorer]["kind"]


def scorer_files(wc):
    if scorer_kind(wc) != "trained":
        return {}
    return {"model": f"results/scorers/{wc.scorer}/classifier.safetensors",
            "meta": f"results/scorers/{wc.scorer}/classifier.json"}


def selector_files(wc):
    return {f"{k}_selector": v for k, v in scorer_files(wc).items()}


def student_targets(wc):
    """The weak continuations a student learns from: one sample each, or the best of N by a selector."""
    spec = w2s.strategy(config, wc.strategy)
    name = f"best_of_{spec.best_of}_{spec.selector}" if spec.best_of else "weak_generations"
    return f"results/{wc.task}/weak/{wc.weak}/seed{wc.seed}/{name}.parquet"


def toxicity_inputs(wc):
    scorer = task(wc)["scorer"]
    runs = {"weak": f"weak/{wc.weak}/seed{wc.seed}", "base": f"base/{wc.strong}/seed{wc.seed}",
            "w2s": f"student/{wc.weak}__{wc.strong}/{wc.strategy}/seed{wc.seed}",
            "ceiling": f"ceiling/{wc.strong}/seed{wc.seed}"}
    files = {}
    for role, run in runs.items():
        files |= {f"{role}_generations": f"results/{wc.task}/{run}/generations.parquet",
                  f"{role}_scores": f"results/{wc.task}/{run}/toxicity_{scorer}.parquet",
                  f"{role}_perplexity": f"results/{wc.task}/{run}/perplexity.parquet"}
    if RUN.scorers[scorer]["kind"] == "trained":
        files["scorer_heldout"] = f"results/scorers/{scorer}/heldout.parquet"
    return files


def all_metrics():
    suffix = {"classification": "", "generation": ".toxicity"}
    return [path for t in TASKS for path in expand(
        "results/{task}/metrics/{weak}__{strong}/{strategy}/seed{seed}{suffix}.parquet", task=t,
        weak=w2s.task_list(config, t, "weak_models"), strong=w2s.task_list(config, t, "strong_models"),
        strategy=w2s.task_list(config, t, "student_strategies"), seed=RUN.seeds, suffix=suffix[w2s.task_kind(config, t)])]


# --- resources ---


def gpu_of(name):
    """Transformers get a GPU; TF-IDF (and no model: an API scorer) needs none."""
    if name is None:
        return 0
    from w2s_align.registry import CLASSIFIER_KINDS

    kind = config["models"][name]["kind"]
    return int(CLASSIFIER_KINDS.trait(kind, "gpu", True)) if kind in CLASSIFIER_KINDS else 1


def request(model, share=1.0, gpu=None):
    """The resources block of a job running `model` (a wildcard name such as "weak", or a function of the
    wildcards giving the model name): its `resources` estimate times `share`, growing with each retry."""
    name = model if callable(model) else (lambda wc: wc[model])

    def scaled(key):
        def value(wc, attempt):
            estimate = getattr(w2s.resources(config, name(wc)) if name(wc) else DEFAULT_REQUEST, key)
            return max(1, round(estimate * share)) * attempt

        return value

    return {"gpu": gpu if gpu is not None else (lambda wc: gpu_of(name(wc))),
            "cpus_per_gpu": lambda wc, threads: threads, "mem_mb": scaled("mem_mb"), "runtime": scaled("runtime")}
