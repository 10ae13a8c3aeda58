"""Metrics, PGR and its bootstrap CI, the degenerate-gap flag, and the seed aggregation."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from w2s_align.errors import PipelineError
from w2s_align.eval.bootstrap import (
    GAP_FLAG,
    NEGATIVE_GAP_FLAG,
    gap_flag,
    multiplicities,
    percentile_ci,
    pgr,
    resample_indices,
    seed_item_resamples,
)
from w2s_align.eval.classification import METRICS, ROLES, evaluate, resample_scores, score_table
from w2s_align.report.aggregate import across_seeds, mean_ci, pgr_text
from w2s_align.report.tables import summarize


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
    hard = {r: (p[r] >= 0.5).astype(int) for r in p}
    direct = {
        r: {
            "accuracy": np.mean(hard[r] == y),
            "balanced_accuracy": balanced_accuracy_score(y, hard[r]),
            "f1_weighted": f1_score(y, hard[r], average="weighted"),
            "f1_macro": f1_score(y, hard[r], average="macro"),
            "auroc": roc_auc_score(y, p[r]),
            "agreement": np.mean(hard[r] == hard["weak"]),
            "correction": np.mean(hard[r][hard["weak"] != y] == y[hard["weak"] != y]),
            "retention": np.mean(hard[r][hard["weak"] == y] == y[hard["weak"] == y]),
            "misfit": np.mean(hard[r] != hard["weak"]),
        }
        for r in p
    }
    assert {
        "accuracy",
        "balanced_accuracy",
        "f1_weighted",
        "f1_macro",
        "auroc",
        "agreement",
        "correction",
        "retention",
        "misfit",
        "majority_fraction",
    } == set(table.xs("w2s").index)
    for role in p:
        for metric, value in direct[role].items():
            assert table.loc[(role, metric), "value"] == pytest.approx(value, rel=1e-12), (role, metric)
    assert table.loc[("weak", "agreement"), "value"] == 1.0
    assert (table.loc[("weak", "correction"), "value"], table.loc[("weak", "retention"), "value"]) == (0, 1)
    assert 0 < table.loc[("w2s", "correction"), "ci_low"] < table.loc[("w2s", "correction"), "ci_high"] < 1
    for metric in METRICS:
        weak, w2s, ceiling = (direct[r][metric] for r in ("weak", "w2s", "ceiling"))
        row = table.loc[("pgr", metric)]
        assert row["value"] == pytest.approx((w2s - weak) / (ceiling - weak)), metric
        assert row["ci_low"] < row["value"] < row["ci_high"], metric
        assert pd.isna(row["flag"]), metric
        assert table.loc[("gap", metric), "value"] == pytest.approx(ceiling - weak), metric
    assert table.loc[("gap", "accuracy"), "ci_low"] > 0
    for metric in METRICS:  # noise floor: half the gain's CI over the gap
        gain, gap = table.loc[("gain", metric)], table.loc[("gap", metric), "value"]
        assert gain["value"] == pytest.approx(direct["w2s"][metric] - direct["weak"][metric])
        assert table.loc[("min_detectable_pgr", metric), "value"] == pytest.approx(
            (gain["ci_high"] - gain["ci_low"]) / 2 / gap
        )


def test_a_model_predicting_one_class_is_flagged_collapsed():
    y, p = predictions()
    p = {**p, "w2s": np.where(np.arange(len(y)) < 0.96 * len(y), 0.9, 0.1)}  # 96% of rows predicted positive
    table = evaluate(y, p, n_boot=50, seed=0).set_index(["role", "metric"])
    assert table.loc[("w2s", "majority_fraction"), "value"] == pytest.approx(np.mean(p["w2s"] >= 0.5))
    assert table.loc[("w2s", "majority_fraction"), "flag"] == "collapsed"
    assert pd.isna(table.loc[("ceiling", "majority_fraction"), "flag"])


@pytest.mark.parametrize("n, n_random", [(12, 100), (400, 20)])
def test_resample_scores_equal_sklearn_on_every_resample(n, n_random):
    """The vectorised metrics give scikit-learn's floats exactly, also on degenerate resamples: one class
    only, one predicted class only, tied scores, a single item."""
    rng = np.random.default_rng(n)
    y = rng.integers(0, 2, n)
    p = {"weak": rng.integers(0, 5, n) / 4.0, "w2s": rng.random(n), "ceiling": np.where(y == 1, 0.9, 0.2)}
    indices = np.vstack(
        [
            np.arange(n),
            rng.integers(0, n, (n_random, n)),
            np.flatnonzero(y == 0)[[0] * n],
            np.flatnonzero(y == 1)[[0, 1] * (n // 2)],
            np.flatnonzero(p["w2s"] >= 0.5)[[0] * n],
        ]
    )
    assert {len(np.unique(y[i])) for i in indices} == {1, 2}
    weak_hard = (p["weak"] >= 0.5).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns on the one-class rows
        expected = np.stack(
            [score_table(y[i], {r: x[i] for r, x in p.items()}, weak_hard[i]) for i in indices]
        )
        single = score_table(y[:1], {r: x[:1] for r, x in p.items()}, weak_hard[:1])
    np.testing.assert_array_equal(resample_scores(y, p, indices), expected)
    np.testing.assert_array_equal(
        resample_scores(y[:1], {r: x[:1] for r, x in p.items()}, np.zeros((1, 1), dtype=int))[0], single
    )


def test_evaluate_ci_is_the_sequential_sklearn_bootstrap():
    """CIs equal those of the reference: one `rng.integers(0, n, n)` resample at a time, scored by
    scikit-learn."""
    y, p = predictions(n=150, seed=3)
    n_boot, seed = 60, 7
    rng = np.random.default_rng(seed)
    weak_hard = (p["weak"] >= 0.5).astype(int)
    samples = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        table = score_table(y[idx], {r: x[idx] for r, x in p.items()}, weak_hard[idx])[:, : len(METRICS)]
        samples.append(np.concatenate([table.ravel(), pgr(*table), table[2] - table[0]]))
    low, high = np.nanpercentile(
        np.array(samples), [50 * (1 - 0.95), 50 * (1 + 0.95)], axis=0
    )  # evaluate's q
    out = evaluate(y, p, n_boot=n_boot, seed=seed).set_index(["role", "metric"])
    for k, (role, metric) in enumerate([(r, m) for r in (*ROLES, "pgr", "gap") for m in METRICS]):
        assert out.loc[(role, metric), "ci_low"] == low[k], (role, metric)
        assert out.loc[(role, metric), "ci_high"] == high[k], (role, metric)


def test_resample_rows_are_the_sequential_draws():
    indices = resample_indices(50, 20, seed=4)
    rng = np.random.default_rng(4)
    np.testing.assert_array_equal(
        indices, np.vstack([np.arange(50)] + [rng.integers(0, 50, 50) for _ in range(20)])
    )
    counts = multiplicities(indices, 50)
    np.testing.assert_array_equal(counts[0], np.ones(50))
    np.testing.assert_array_equal(counts[5], np.bincount(indices[5], minlength=50))


def test_percentile_ci_leaves_out_nan():
    samples = np.column_stack([np.arange(101.0), np.r_[np.arange(51.0), [np.nan] * 50], np.full(101, np.nan)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        low, high = percentile_ci(samples, 0.9)
    np.testing.assert_allclose(low[:2], [5.0, 2.5])
    np.testing.assert_allclose(high[:2], [95.0, 47.5])
    assert np.isnan(low[2]) and np.isnan(high[2])
    low, high = percentile_ci(np.empty((0, 3)), 0.95)  # no resamples: no CI
    assert np.isnan(low).all() and np.isnan(high).all()


def test_pgr_is_flagged_when_gap_is_within_noise():
    y, p = predictions(n=200)
    p["ceiling"] = p["weak"].copy()
    wrong = np.flatnonzero((p["weak"] >= 0.5) != y)[:2]
    p["ceiling"][wrong] = y[wrong]  # ceiling fixes two of the weak model's errors: a 1-point gap
    table = evaluate(y, p, n_boot=200, seed=0).set_index(["role", "metric"])
    assert table.loc[("pgr", "accuracy"), "flag"] == GAP_FLAG
    assert table.loc[("gap", "accuracy"), "ci_low"] <= 0


def test_gap_flag():
    assert gap_flag(0.01, 0.05) is None
    assert gap_flag(0.0, 0.05) == GAP_FLAG
    assert gap_flag(-0.05, -0.01) == NEGATIVE_GAP_FLAG
    assert gap_flag(np.nan, np.nan) == GAP_FLAG  # no CI (no resamples): not a number to read
    y, p = predictions(weak_acc=0.9, ceiling_acc=0.6)
    table = evaluate(y, p, n_boot=100, seed=0).set_index(["role", "metric"])
    assert table.loc[("pgr", "accuracy"), "flag"] == NEGATIVE_GAP_FLAG
    assert table.loc[("gap", "accuracy"), "ci_high"] < 0


def test_evaluate_rejects_labels_other_than_0_1():
    y, p = predictions(n=20)
    with pytest.raises(PipelineError, match="0/1"):
        evaluate(y + 1, p, n_boot=10, seed=0)
    with pytest.raises(PipelineError, match="finite"):
        evaluate(y, {**p, "w2s": np.full(20, np.nan)}, n_boot=10, seed=0)


def run_table(seed: int, n_boot: int = 200, **accuracies) -> pd.DataFrame:
    """A classification run's metric rows (as the metrics job writes them) on synthetic predictions."""
    y, p = predictions(seed=seed, **accuracies)
    table = evaluate(y, p, n_boot=n_boot, seed=seed)
    ident = {"task": "t", "weak_model": "w", "strong_model": "s", "strategy": "naive", "seed": seed}
    return table.assign(**ident, track="labels", kind="classification")


def test_seed_item_resamples():
    replicates = np.random.default_rng(0).random((3, 50, 2))
    np.testing.assert_array_equal(
        seed_item_resamples(replicates[:1], 50, 0), replicates[0]
    )  # one seed: its own
    draws = seed_item_resamples(replicates, 400, 1)
    rng = np.random.default_rng(1)
    seeds, items = rng.integers(0, 3, (400, 3)), rng.integers(0, 50, (400, 3))
    np.testing.assert_array_equal(draws[7], replicates[seeds[7], items[7]].mean(axis=0))
    assert draws.shape == (400, 2)
    # the seed level adds the spread between seeds: shifted seeds widen the CI of the mean
    shifted = replicates + np.array([0.0, 0.5, 1.0])[:, None, None]
    assert np.ptp(seed_item_resamples(shifted, 400, 1)[:, 0]) > np.ptp(draws[:, 0]) + 0.5


def test_across_seeds_is_the_pgr_of_means_over_every_seed():
    runs = pd.concat(
        [
            run_table(0),
            run_table(1, w2s_acc=0.72),
            run_table(2, ceiling_acc=0.705),
            run_table(3),
            run_table(4),
        ],
        ignore_index=True,
    )
    per_seed = runs[(runs.role == "pgr") & (runs.metric == "accuracy")].set_index("seed")
    assert pd.notna(per_seed.loc[2, "flag"]) and pd.isna(per_seed.loc[0, "flag"])  # seed 2: gap within noise
    agg = across_seeds(runs)
    acc = agg[agg.metric == "accuracy"].set_index("role")
    means = runs[runs.metric == "accuracy"].groupby("role")["value"].mean()
    assert acc.loc["w2s", "mean"] == pytest.approx(means["w2s"])
    assert acc.loc["pgr", "mean"] == pytest.approx(
        (means["w2s"] - means["weak"]) / (means["ceiling"] - means["weak"])
    )  # the ratio of the means, not the mean of the ratios, and seed 2 is in it
    assert acc.loc["pgr", "mean"] != pytest.approx(per_seed["value"].mean())
    assert acc.loc["pgr", "low"] < acc.loc["pgr", "mean"] < acc.loc["pgr", "high"]
    assert (acc.loc["pgr", "n_seeds"], acc.loc["pgr", "n_flagged"]) == (5, 1)
    assert acc.loc["gain", "mean"] == pytest.approx(means["w2s"] - means["weak"])
    assert pd.isna(acc.loc["pgr", "flag"])
    assert "1 of 5 seeds: own gap within noise" in pgr_text(acc)


def test_one_seed_aggregate_keeps_the_runs_ci():
    run = run_table(0)
    acc = across_seeds(run).query("metric == 'accuracy'").set_index("role")
    own = run[run.metric == "accuracy"].set_index("role")
    for role in ("weak", "w2s", "ceiling", "pgr", "gap", "gain"):
        assert (acc.loc[role, "low"], acc.loc[role, "high"]) == (
            own.loc[role, "ci_low"],
            own.loc[role, "ci_high"],
        )
        assert acc.loc[role, "mean"] == pytest.approx(own.loc[role, "value"], rel=1e-12)
    assert acc.loc["min_detectable_pgr", "mean"] == pytest.approx(own.loc["min_detectable_pgr", "value"])


def test_a_gap_within_noise_across_seeds_shows_the_points_recovered():
    runs = pd.concat([run_table(s, ceiling_acc=0.7, n_boot=100) for s in (0, 1)], ignore_index=True)
    acc = across_seeds(runs).query("metric == 'accuracy'").set_index("role")
    assert acc.loc["pgr", "flag"] == GAP_FLAG
    text = pgr_text(acc)
    gain = acc.loc["gain"]
    assert text.startswith(
        f"— ({GAP_FLAG}; recovered {gain['mean']:+.3f} [{gain['low']:+.3f}, {gain['high']:+.3f}])"
    )


def test_mean_ci_across_seeds():
    mean, half, n = mean_ci(pd.Series([0.5, 0.7, np.nan]))
    assert (mean, n) == (pytest.approx(0.6), 2)
    assert half == pytest.approx(12.706 * np.std([0.5, 0.7], ddof=1) / np.sqrt(2), rel=1e-3)
    assert np.isnan(mean_ci(pd.Series([0.4]))[1])


def test_summary_tables(tmp_path):
    files = []
    for seed in (0, 1):
        y, p = predictions(seed=seed)
        if seed == 1:
            p = {**p, "w2s": np.full(len(y), 0.9)}  # a student that predicts one class
        t = evaluate(y, p, n_boot=50, seed=seed)
        t = pd.concat(
            [
                t,
                pd.DataFrame(
                    {
                        "role": ["weak_labels", "ground_truth"],
                        "metric": "positive_fraction",
                        "value": [0.3, 0.4],
                    }
                ),
            ],
            ignore_index=True,
        )
        for k, v in {
            "task": "t",
            "weak_model": "w",
            "strong_model": "s",
            "strategy": "naive",
            "seed": seed,
            "track": "labels",
            "kind": "classification",
        }.items():
            t[k] = v
        files.append(tmp_path / f"m{seed}.parquet")
        t.to_parquet(files[-1])
    summarize(
        [str(f) for f in files], str(tmp_path / "s.csv"), str(tmp_path / "s.parquet"), str(tmp_path / "s.md")
    )
    md = (tmp_path / "s.md").read_text()
    assert "| t | w | s | naive | 2 |" in md
    assert "min. detectable PGR" in md and "seed sd weak / w2s / ceiling" in md
    assert (
        md.count("**collapsed** (100% one class)") == 2
    )  # seed 1's student, on the accuracy and AUROC tables
    assert "| 30.0% (40.0%) |" in md
    csv = pd.read_csv(tmp_path / "s.csv")
    assert set(csv["seed"]) == {0, 1}


def test_generation_tables_show_the_seed_to_seed_sd():
    from w2s_align.report.tables import GENERATION_COLUMNS, generation_markdown

    rows = []
    for seed, shift in ((0, 0.0), (1, 0.1)):
        for role, value in (
            ("weak", 0.5),
            ("base", 0.6),
            ("w2s", 0.4),
            ("ceiling", 0.3),
            ("pgr", 0.5),
            ("gap", 0.2),
            ("gain", 0.1),
            ("tuned", 0.3),
            ("min_detectable_pgr", 0.25),
        ):
            for metric in GENERATION_COLUMNS:
                rows.append(
                    {
                        "task": "tox",
                        "weak_model": "w",
                        "strong_model": "s",
                        "strategy": "naive",
                        "seed": seed,
                        "role": role,
                        "metric": metric,
                        "value": value + shift,
                        "ci_low": value,
                        "ci_high": value + 0.2,
                        "flag": None,
                    }
                )
    runs = pd.DataFrame(rows)
    md = "\n".join(generation_markdown(runs, across_seeds(runs), "tox"))
    assert f"| 0.350 ± 0.635 (sd {np.std([0.3, 0.4], ddof=1):.3f}) |" in md  # the ceiling's EMT over 2 seeds
    # per run, under the PGR: the gap, the ceiling's gain over the untuned model (CIs) and the noise floor
    assert (
        "| w → s | naive | 0 | weak − ceiling; base − ceiling; min. detectable PGR | 0.200 [0.200, 0.400]; "
        "0.300 [0.300, 0.500]; 0.250 |" in md
    )
