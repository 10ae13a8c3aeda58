"""End to end on the tiny config, then what a config or code edit reruns (dry runs against the finished run)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import pending_jobs, snakemake

STRONG_JOBS = {"train_student", "train_ceiling", "metrics", "summary", "plots", "all"}
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
    assert {"task", "weak_model", "strong_model", "strategy", "seed", "role", "metric", "value", "ci_low",
            "ci_high", "flag", "n_test"} <= set(summary.columns)
    assert set(summary["task"]) == {"safety", "legal"} and set(summary["weak_model"]) == {"tiny-gpt2", "tfidf"}
    scores = summary[summary.role.isin(["weak", "w2s", "ceiling"])]
    assert np.isfinite(scores[["value", "ci_low", "ci_high"]].to_numpy()).all()
    assert ((scores["value"] >= 0) & (scores["value"] <= 1)).all()
    md = (tiny_run / "results/tables/summary.md").read_text()
    assert "## accuracy: per run" in md and "| safety | tfidf | small-bert | logconf | 0 |" in md
    assert "## PGR (accuracy) by strategy" in md
    for task in ("safety", "legal"):
        for kind in ("scores", "pgr"):
            png = tiny_run / f"results/plots/{task}_{kind}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_weak_label_parquet_schema(tiny_run):
    df = pd.read_parquet(tiny_run / "results/legal/weak/tiny-gpt2/seed0/weak_labels.parquet")
    assert {"id", "split", "text", "text_pair", "gt_label", "weak_p1", "weak_hard", "weak_model",
            "weak_config_hash"} <= set(df.columns)
    assert set(df["split"]) == {"weak_label", "val", "test"}
    assert df["weak_p1"].between(0, 1).all() and set(df["weak_hard"]) <= {0, 1}
    assert (df["weak_hard"] == (df["weak_p1"] >= 0.5)).all()
    assert df["text_pair"].notna().all() and df["id"].is_unique
    assert (df["weak_model"] == "tiny-gpt2").all()


def test_second_run_has_nothing_to_do(tiny_run):
    assert pending_jobs(tiny_run) == {}


def test_dry_run_is_fast_and_imports_no_torch(tiny_run):
    timings = []
    for _ in range(2):  # best of two: the machine may be busy
        start = time.perf_counter()
        snakemake(tiny_run, "-n")
        timings.append(time.perf_counter() - start)
    assert min(timings) < 3.0
    snakefiles = [tiny_run / "Snakefile", *(tiny_run / "workflow/rules").glob("*.smk")]
    assert not any("torch" in f.read_text() for f in snakefiles)


def test_student_lr_reruns_only_the_students(tiny_run):
    def change(cfg):
        cfg["models"]["small-bert"]["student"] = {"lr": 5e-4}
    with edited(tiny_run / "config.yaml", edit_config(change)):
        jobs = pending_jobs(tiny_run)
    assert set(jobs) == {"train_student"} | REPORTING
    assert any("Params have changed" in r for r in jobs["train_student"])


def test_strong_lr_reruns_strong_and_metrics_only(tiny_run):
    def change(cfg):
        cfg["models"]["small-bert"]["train"]["lr"] = 5e-4
    with edited(tiny_run / "config.yaml", edit_config(change)):
        assert set(pending_jobs(tiny_run)) == STRONG_JOBS


def test_weak_lr_reruns_weak_labels_students_not_ceiling(tiny_run):
    def change(cfg):
        cfg["models"]["tiny-gpt2"]["train"]["lr"] = 1e-3
    with edited(tiny_run / "config.yaml", edit_config(change)):
        jobs = pending_jobs(tiny_run)
    assert set(jobs) == {"train_weak", "weak_labels", "train_student"} | REPORTING
    assert len(jobs["train_weak"]) == 2  # one per task; the tfidf supervisor is untouched


def test_reordering_config_keys_changes_nothing(tiny_run):
    def reorder(text):
        def rev(obj):
            return {k: rev(obj[k]) for k in reversed(list(obj))} if isinstance(obj, dict) else obj
        return yaml.safe_dump(rev(yaml.safe_load(text)), sort_keys=False)
    with edited(tiny_run / "config.yaml", reorder):
        assert pending_jobs(tiny_run) == {}


def test_touching_library_code_changes_nothing(tiny_run):
    for path in (tiny_run / "src/w2s_align").glob("*.py"):
        path.touch()
    assert pending_jobs(tiny_run) == {}


ALL_JOBS = {"split_data", "train_weak", "weak_labels", "train_ceiling", "train_student"} | REPORTING


@pytest.mark.parametrize("module, direct, pending", [
    ("plots", {"plots"}, {"plots", "all"}),
    ("tables", {"summary"}, {"summary", "plots", "all"}),  # plots import tables but rerun anyway
    ("metrics", {"metrics"}, REPORTING),  # tables imports metrics: summary reruns anyway
    ("data", {"split_data"}, ALL_JOBS),
    ("losses", {"train_weak", "train_ceiling"}, ALL_JOBS - {"split_data"}),
    ("predict", {"weak_labels", "train_ceiling"}, ALL_JOBS - {"split_data", "train_weak"}),
])
def test_editing_a_module_reruns_exactly_its_users(tiny_run, module, direct, pending):
    """Jobs that list the module as an updated input are its users (jobs downstream of another
    rerun job only say "updated by another job"); nothing else is pending."""
    path = tiny_run / f"src/w2s_align/{module}.py"
    with edited(path, lambda text: text + "\n# edited\n"):
        jobs = pending_jobs(tiny_run)
    changed = {rule for rule, reasons in jobs.items()
               if any(f"src/w2s_align/{module}.py" in r for r in reasons)}
    assert changed == direct
    assert set(jobs) == pending


def test_adding_a_strategy_reruns_only_its_students_and_reporting(tiny_run):
    def change(cfg):
        cfg["strategies"]["confident"] = {"top_fraction": 0.5}
        cfg["student_strategies"].append("confident")
    with edited(tiny_run / "config.yaml", edit_config(change)):
        jobs = pending_jobs(tiny_run)
    assert set(jobs) == {"train_student"} | REPORTING
    assert len(jobs["train_student"]) == 4  # 2 tasks x 2 weak models, the new strategy only


def test_adding_a_weak_ensemble_reuses_its_members(tiny_run):
    def change(cfg):
        cfg["models"]["ens"] = {"kind": "ensemble", "members": ["tiny-gpt2", "tfidf"]}
        cfg["weak_models"].append("ens")
    with edited(tiny_run / "config.yaml", edit_config(change)):
        jobs = pending_jobs(tiny_run)
    assert set(jobs) == {"ensemble_labels", "train_student"} | REPORTING


def test_weak_labels_are_byte_identical_when_rerun(tiny_run):
    target = "results/safety/weak/tiny-gpt2/seed0/weak_labels.parquet"
    before = (tiny_run / target).read_bytes()
    snakemake(tiny_run, "--cores", "2", "--forcerun", "train_weak", target)
    assert (tiny_run / target).read_bytes() == before


def test_report_bundles_tables_and_plots(tiny_run):
    snakemake(tiny_run, "--report", "results/report.html")
    html = (tiny_run / "results/report.html").read_text()
    assert "Performance gap recovered" in html and "legal_scores.png" in html and "summary.csv" in html


def test_lint_passes(tiny_run):
    proc = snakemake(tiny_run, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
