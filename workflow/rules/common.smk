# Helpers only (no torch); the logic lives in w2s_align.settings and w2s_align.cluster (unit tested).
import os
import re

from snakemake.exceptions import WorkflowError

from w2s_align.cluster import api_quota, plan
from w2s_align.errors import ConfigError
from w2s_align.fingerprint import code_fingerprint
from w2s_align.settings import paths as layout
from w2s_align.settings import settings as w2s
from w2s_align.settings import validate

try:  # the config read once: every helper below, the rules' params and the plan read SETTINGS, not `config`
    SETTINGS = validate.load_settings(config, os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml"))
    plan.check_requests(SETTINGS)  # every model's resources (request() below) cover its jobs' estimated needs
except ConfigError as error:
    raise WorkflowError(str(error)) from None

RUN = SETTINGS.run
TASKS = SETTINGS.active_tasks()
SPLITS = ["weak_train", "weak_label", "val", "test"]
PAIRS = ["weak_train", "weak_label", "val"]


def code(script):
    """Fingerprint of what `script` and the library modules it uses do (docstrings and comments do not count)."""
    base = workflow.basedir
    return code_fingerprint(os.path.join(base, "src/w2s_align"), os.path.join(base, "workflow/scripts", script))


def from_config(fn, *wildcards):
    """Input/param function: `fn(SETTINGS, *values of the wildcards)` (w2s_align.settings.settings or .paths)."""
    return lambda wc: fn(SETTINGS, *(wc[w] for w in wildcards))


def task(wc):
    return SETTINGS.tasks[wc.task]


def max_length(wc):
    return task(wc).max_length


def spec_of(model):
    """Param function: the canonical spec of the model named by a wildcard (or a function of the wildcards)."""
    return lambda wc: w2s.model_spec(SETTINGS, model(wc) if callable(model) else wc[model])


def hparams(role):
    return lambda wc: w2s.train_hparams(SETTINGS, wc["weak" if role == "weak" else "strong"], role)


def strategy_spec(wc):
    return SETTINGS.strategies[wc.strategy].canonical()


def eval_samples(wc):
    return task(wc).eval_samples


def task_block(key, spec):
    """Param function: the task's `key` block (a `spec`), canonical."""
    return lambda wc: spec.canonical(getattr(task(wc), key))


def source_of(key, block=task):
    """Input function: the local data file of the `key` block of a task (or scorer); none for hf: datasets."""
    sources = lambda wc: getattr(block(wc), key).source  # one, or a list (evaluation prompts)
    return lambda wc: [s for s in ([sources(wc)] if isinstance(sources(wc), str) else sources(wc)) if w2s.is_local(s)]


def split_path(split):
    return f"results/{{task}}/splits/seed{{seed}}/{split}.parquet"


def run_split(split):
    return lambda wc: f"results/{wc.task}/splits/seed{run_seed(wc)}/{split}.parquet"


def pair_path(split):
    return f"results/{{task}}/pairs/seed{{seed}}/{split}.parquet"


def names_regex(names):
    """A wildcard constraint matching exactly these names (nothing when empty)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def ensemble_members(wc):
    members = SETTINGS.models[wc.weak].spec.members
    return {m: f"results/{wc.task}/weak/{m}/seed{wc.seed}/weak_labels.parquet" for m in members}


def base_files(name):
    """A GGUF model's converted folder (rule input), or nothing for hub ids and local folders."""
    return layout.base_files(SETTINGS, name)


def base_of(model):
    """Input function: the converted folder of the model named by a wildcard (or a function of the wildcards)."""
    return lambda wc: base_files(model(wc) if callable(model) else wc[model])


def run_model(wc):
    """The model of a run folder: (dpo-)ceiling/<strong>/..., (dpo-)student/<weak>__<strong>/..., weak/<weak>/..."""
    parts = wc.model_run.split("/")
    return parts[1].split("__")[-1] if parts[0] in ("student", "dpo-student") else parts[1]


def run_seed(wc):
    return wc.model_run.rsplit("seed", 1)[1]


def local_dir(wc, input):  # the converted folder of a GGUF model (None: load from the model's path)
    return os.path.dirname(input.base[0]) if "base" in input.keys() else None


def reference_lm(wc):
    return task(wc).reference_lm


def scorer_files(wc, prefix=""):
    return layout.scorer_checkpoint(SETTINGS, wc.scorer, prefix)


def selector_files(wc):
    return scorer_files(wc, "selector_")


def scorer_setting(key, spec=None):
    """Param function: a scorer's config value (key None: the whole entry), canonical if it is a `spec` block."""
    if key is None:
        return lambda wc: w2s.canonical_json(scorer(wc).entry)
    return lambda wc: spec.canonical(getattr(scorer(wc), key)) if spec else scorer(wc).entry[key]


def scorer(wc):
    return SETTINGS.scorers[wc.scorer]


def request(model, share=1.0, gpu=None):
    """models.<name>.resources of a job running `model` (wildcard or function), runtime x share, x attempt."""
    name = model if callable(model) else (lambda wc: wc[model])

    def get(key, part=1.0):
        return lambda wc, attempt: max(1, round(getattr(SETTINGS.resources(name(wc)), key) * part)) * attempt

    gpus = gpu if gpu is not None else (lambda wc: layout.gpus(SETTINGS, name(wc)))
    return dict(gpu=gpus, cpus_per_gpu=lambda wc, threads: threads, mem_mb=get("mem_mb"), runtime=get("runtime", share))


def prefs(key):  # param/input function: a setting of the task's preferences block
    return from_config(lambda settings, task: layout.preference_setting(settings, task, key), "task")
