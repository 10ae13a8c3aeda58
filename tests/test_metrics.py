"""Metrics, PGR and its bootstrap CI, the degenerate-gap flag, and the seed aggregation."""

import numpy as np
import pandas as pd
import pytest

from w2s_align.metrics import GAP_FLAG, evaluate, pgr
from w2s_align.tables import mean_ci, summarize


def test_pgr_formula_and_zero_gap():
    out = pgr(np.array([0.6, 0.7]), np.array([0.7, 0.8]), np.array([0.8, 0.7]))
    assert out[0] == pytest.approx(0.5)
    assert np.isnan(out[1])


def predictions(n=600, seed=0, weak_acc=0.7, w2s_acc=0.8, ceiling_acc=0.9):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)

    def model(acc):
        correct = rng.random(n) < acc
        hard = np.where(correct, y, 1 - y)
        return np.clip(hard * 0.8 + 0.1 + rng.normal(0, 0.05, n), 0, 1)

    return y, {"weak": model(weak_acc), "w2s": model(w2s_acc), "ceiling": model(ceiling_acc)}


def test_evaluate_point_values_match_direct_computation():
    y, p = predictions()
    table = evaluate(y, p, n_boot=200, seed=0).set_index(["role", "metric"])
    acc = {r: np.mean((p[r] >= 0.5) == y) for r in p}
    for role in p:
        assert table.loc[(role, "accuracy"), "value"] == pytest.approx(acc[role])
    expected = (acc["w2s"] - acc["weak"]) / (acc["ceiling"] - acc["weak"])
    row = table.loc[("pgr", "accuracy")]
    assert row["value"] == pytest.approx(expected)
    assert row["ci_low"] < row["value"] < row["ci_high"]
    assert pd.isna(row["flag"])
    assert table.loc[("weak", "agreement"), "value"] == 1.0
    assert {"accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "auroc", "agreement"} == set(
        table.xs("w2s").index)


def test_pgr_is_flagged_when_gap_is_within_noise():
    y, p = predictions(n=200)
    p["ceiling"] = p["weak"].copy()
    wrong = np.flatnonzero((p["weak"] >= 0.5) != y)[:2]
    p["ceiling"][wrong] = y[wrong]  # ceiling fixes two of the weak model's errors: a 1-point gap
    table = evaluate(y, p, n_boot=200, seed=0).set_index(["role", "metric"])
    assert table.loc[("pgr", "accuracy"), "flag"] == GAP_FLAG
    assert table.loc[("gap", "accuracy"), "ci_low"] <= 0


def test_mean_ci_across_seeds():
    mean, half, n = mean_ci(pd.Series([0.5, 0.7, np.nan]))
    assert (mean, n) == (pytest.approx(0.6), 2)
    assert half == pytest.approx(12.706 * np.std([0.5, 0.7], ddof=1) / np.sqrt(2), rel=1e-3)
    assert np.isnan(mean_ci(pd.Series([0.4]))[1])


def test_summary_tables(tmp_path):
    files = []
    for seed in (0, 1):
        y, p = predictions(seed=seed)
        t = evaluate(y, p, n_boot=50, seed=seed)
        for k, v in {"task": "t", "weak_model": "w", "strong_model": "s", "strategy": "naive", "seed": seed}.items():
            t[k] = v
        files.append(tmp_path / f"m{seed}.parquet")
        t.to_parquet(files[-1])
    summarize([str(f) for f in files], str(tmp_path / "s.csv"), str(tmp_path / "s.parquet"), str(tmp_path / "s.md"))
    md = (tmp_path / "s.md").read_text()
    assert "| t | w | s | naive | 2 |" in md
    csv = pd.read_csv(tmp_path / "s.csv")
    assert set(csv["seed"]) == {0, 1} and np.isfinite(csv["value"]).all()
