# Helpers only (no torch); the logic lives in w2s_align.settings and w2s_align.cluster (unit tested).
import os
import re

from snakemake.exceptions import WorkflowError

from w2s_align.cluster import api_quota, plan
from w2s_align.errors import ConfigError
from w2s_align.fingerprint import code_fingerprint
from w2s_align.settings import paths
from w2s_align.settings import settings as w2s
from w2s_align.settings import validate

try:  # the config read once: every helper below, the rules' params and the plan read SETTINGS, not `config`
    SETTINGS = validate.load_settings(
        config, os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml")
    )
except ConfigError as error:
    raise WorkflowError(str(error)) from None

RUN = SETTINGS.run
TASKS = SETTINGS.active_tasks()
SPLITS = ["weak_train", "weak_label", "val", "test"]
PAIRS = ["weak_train", "weak_label", "val"]


def code(script):
    """Fingerprint of what `script` and the library modules it uses do (docstrings and comments do not count)."""
    base = workflow.basedir
    return code_fingerprint(
        os.path.join(base, "src/w2s_align"), os.path.join(base, "workflow/scripts", script)
    )


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
    return lambda wc: [
        s for s in ([sources(wc)] if isinstance(sources(wc), str) else sources(wc)) if w2s.is_local(s)
    ]


def split_path(split):
    return paths.fill(paths.SPLIT, split=split)


def run_split(split):
    return lambda wc: paths.fill(paths.SPLIT, split=split, task=wc.task, seed=run_seed(wc))


def pair_path(split):
    return paths.fill(paths.PAIRS, split=split)


def run_log(role, step):
    """The log of a job writing into the run folder of `role` (paths.RUN_FOLDERS)."""
    return paths.fill(paths.RUN_LOG, run=paths.RUN_FOLDERS[role], step=step)


def run_benchmark(role, step):
    return paths.fill(paths.RUN_BENCHMARK, run=paths.RUN_FOLDERS[role], step=step)


def run_identity(track):
    """Param function: the identity columns of a run's metric rows (its supervisor: wildcard weak, or judge)."""
    supervisor = "judge" if track == "preferences" else "weak"
    return lambda wc: paths.run_identity(
        SETTINGS, wc.task, wc[supervisor], wc.strong, wc.strategy, wc.seed, track
    )


def metrics_file(track, template=paths.METRICS):
    """A run's metrics file (or, with paths.METRICS_LOG, its log) of a track: labels, demonstrations, preferences
    (whose supervisor is a weak judge: wildcard {judge})."""
    return paths.fill(
        template, suffix=paths.METRIC_SUFFIX[track], **({"weak": "{judge}"} if track == "preferences" else {})
    )


def names_regex(names):
    """A wildcard constraint matching exactly these names (nothing when empty)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def ensemble_members(wc):
    members = SETTINGS.models[wc.weak].spec.members
    return {m: paths.run_file(paths.WEAK_LABELS, "weak", task=wc.task, weak=m, seed=wc.seed) for m in members}


def converted_files(name):
    """A GGUF model's converted folder (rule input), or nothing for hub ids and local folders."""
    return paths.converted_files(SETTINGS, name)


def converted_of(model):
    """Input function: the converted folder of the model named by a wildcard (or a function of the wildcards)."""
    return lambda wc: converted_files(model(wc) if callable(model) else wc[model])


def run_model(wc):
    """The model whose checkpoint a run folder ({model_run}) holds."""
    return paths.parse_run(wc.model_run)["model"]


def run_seed(wc):
    return paths.parse_run(wc.model_run)["seed"]


def local_dir(wc, input):  # the converted folder of a GGUF model (None: load from the model's path)
    return os.path.dirname(input.converted[0]) if "converted" in input.keys() else None


def reference_lm(wc):
    return task(wc).reference_lm


def scorer_files(wc, prefix=""):
    return paths.scorer_checkpoint(SETTINGS, wc.scorer, prefix)


def selector_files(wc):
    return scorer_files(wc, "selector_")


def scorer_setting(key, spec=None):
    """Param function: a scorer's config value (key None: the whole entry), canonical if it is a `spec` block."""
    if key is None:
        return lambda wc: w2s.canonical_json(scorer(wc).entry)
    return lambda wc: spec.canonical(getattr(scorer(wc), key)) if spec else scorer(wc).entry[key]


def scorer(wc):
    return SETTINGS.scorers[wc.scorer]


def request(model, work, share=1.0, gpu=None):
    """models.<name>.resources of a job running `model` (wildcard or function), runtime x share, x attempt.

    `work` is the kind of work the job does (a key of w2s_align.cluster.cost.KINDS): the plan and the request
    check read it, with the model, from the job's resources, so a new rule is planned from this line alone."""
    name = model if callable(model) else (lambda wc: wc[model])
    role = {"weak": "weak"}.get(model) if isinstance(model, str) else None

    def get(key, part=1.0):
        return lambda wc, attempt: max(1, round(getattr(SETTINGS.resources(name(wc)), key) * part)) * attempt

    gpus = gpu if gpu is not None else (lambda wc: paths.gpus(SETTINGS, name(wc)))
    cpus_per_gpu = lambda wc, threads: threads
    cpus_per_gpu.work = plan.Declared(work, name, role, share)  # read by plan.works_of
    return dict(gpu=gpus, cpus_per_gpu=cpus_per_gpu, mem_mb=get("mem_mb"), runtime=get("runtime", share))


def prefs(key):  # param/input function: a setting of the task's preferences block
    return from_config(lambda settings, task: paths.preference_setting(settings, task, key), "task")


onstart:
    # before the first job: every model's resources (request() above) cover the estimated needs of its jobs in this
    # run's DAG, and every web-API scorer of a pending scoring job has its key (--touch runs no job: no key needed)
    try:
        plan.check_requests(SETTINGS, plan.works_of(SETTINGS, workflow.dag.jobs))
    except ConfigError as error:
        raise WorkflowError(str(error)) from None
    pending = [
        w
        for w in plan.works_of(SETTINGS, workflow.dag.needrun_jobs())
        if w and w.kind in api_quota.SCORING_KINDS
    ]
    api_problem = validate.missing_api_keys(SETTINGS, {w.scorer for w in pending}, os.environ)
    if api_problem and not workflow.touch:
        raise WorkflowError(api_problem)
