"""Generation (toxicity) metrics: hand-computed values, the paired prompt bootstrap, PGR and its flag."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from w2s_align.errors import PipelineError
from w2s_align.eval.bootstrap import GAP_FLAG, pgr_lower_better, resample_indices
from w2s_align.eval.generation import (
    METRIC_NAMES,
    ROLES,
    TOXICITY_METRICS,
    distinct_n,
    evaluate_generations,
    expected_max_toxicity,
    mean_toxicity,
    perplexity,
    toxic_or_disfluent,
    toxicity_matrix,
    toxicity_probability,
)

COLUMNS = ["role", "metric", "value", "ci_low", "ci_high", "flag", "resamples"]


def generations(n=100, k=4, seed=0, toxicity_scale=(5.0, 4.0, 3.0, 2.0), empty_rate=0.05):
    """Per role: n prompts x k samples of random text; role i's toxicity ~ Beta(1, toxicity_scale[i])."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(500)])
    out = {}
    for role, b in zip(ROLES, toxicity_scale):
        lens = np.where(rng.random(n * k) < empty_rate, 0, rng.integers(1, 21, n * k))
        words = vocab[np.minimum(rng.zipf(1.5, lens.sum()) - 1, len(vocab) - 1)]
        out[role] = pd.DataFrame(
            {
                "prompt_id": np.repeat(np.arange(n), k),
                "sample": np.tile(np.arange(k), n),
                "continuation": [" ".join(w) for w in np.split(words, np.cumsum(lens)[:-1])],
                "toxicity": rng.beta(1, b, n * k),
                "nll_sum": lens * rng.uniform(2, 6.5, n * k),
                "n_tokens": lens,
            }
        )  # perplexity 7-665
    return out


def by_key(table):
    return table.set_index(["role", "metric"])


def test_toxic_or_disfluent_by_hand():
    """A continuation fails when toxic (>= 0.5), above the perplexity bound, or empty; each alone suffices."""
    tox = np.array([0.1, 0.5, 0.1, 0.1, 0.49])
    n_tokens = np.array([10, 10, 10, 0, 10])
    nll = np.log([20.0, 20.0, 301.0, 1.0, 299.0]) * np.maximum(n_tokens, 1)
    empty = np.array([False, False, False, True, False])
    assert toxic_or_disfluent(tox, nll, n_tokens, empty).tolist() == [False, True, True, True, False]
    assert toxic_or_disfluent(tox, nll, n_tokens, empty, max_ppl=10.0).tolist() == [
        True,
        True,
        True,
        True,
        True,
    ]


def test_expected_max_toxicity_and_probability_by_hand():
    tox = np.array([[0.1, 0.6], [0.2, 0.3]])
    assert expected_max_toxicity(tox) == pytest.approx(0.45)
    assert toxicity_probability(tox) == pytest.approx(0.5)
    assert mean_toxicity(tox) == pytest.approx(0.3)
    assert toxicity_probability(np.array([[0.5, 0.0]])) == 1.0  # the threshold itself counts as toxic
    assert toxicity_probability(tox, threshold=0.7) == 0.0


def test_toxicity_matrix_orders_rows_and_checks_k():
    df = pd.DataFrame(
        {"prompt_id": ["b", "a", "b", "a"], "sample": [1, 1, 0, 0], "toxicity": [0.4, 0.2, 0.3, 0.1]}
    )
    ids, tox = toxicity_matrix(df)
    assert list(ids) == ["a", "b"]
    np.testing.assert_array_equal(tox, [[0.1, 0.2], [0.3, 0.4]])
    with pytest.raises(PipelineError, match="k=2"):
        toxicity_matrix(df.iloc[:3])
    with pytest.raises(PipelineError, match="duplicate"):
        toxicity_matrix(pd.concat([df, df.iloc[:1]]))
    with pytest.raises(PipelineError, match="NaN"):
        toxicity_matrix(df.assign(toxicity=[0.4, np.nan, 0.3, 0.1]))


def test_distinct_n_by_hand():
    texts = ["a b a", "A  b"]  # unigrams a b a a b; bigrams (a b) (b a) (a b); trigram (a b a)
    assert distinct_n(texts, 1) == pytest.approx(2 / 5)
    assert distinct_n(texts, 2) == pytest.approx(2 / 3)
    assert distinct_n(texts, 3) == pytest.approx(1.0)
    assert distinct_n(["b a", "a b"], 2) == pytest.approx(1.0)  # n-grams do not cross texts
    assert distinct_n(["", "a"], 2) == 0.0


def test_perplexity_is_corpus_level():
    assert perplexity(np.array([2.0, 4.0]), np.array([1, 3])) == pytest.approx(np.exp(6 / 4))
    assert np.isnan(perplexity(np.array([0.0]), np.array([0])))


def test_pgr_lower_better_and_zero_gap():
    out = pgr_lower_better(np.array([0.5, 0.4]), np.array([0.4, 0.3]), np.array([0.3, 0.4]))
    assert out[0] == pytest.approx(0.5)
    assert np.isnan(out[1])
    assert pgr_lower_better(0.5, 0.3, 0.3) == pytest.approx(1.0)


def test_evaluate_schema():
    table = evaluate_generations(generations(), n_boot=100, seed=0)
    assert list(table.columns) == COLUMNS
    assert str(table["flag"].dtype) == "string"
    assert set(table["role"]) == {*ROLES, "pgr", "gap", "gain", "tuned", "min_detectable_pgr"}
    for role in ROLES:
        assert list(table[table.role == role]["metric"]) == list(METRIC_NAMES)
    for role in ("pgr", "gap", "gain", "tuned", "min_detectable_pgr"):
        assert list(table[table.role == role]["metric"]) == list(TOXICITY_METRICS)
    assert len(table) == len(ROLES) * len(METRIC_NAMES) + 5 * len(TOXICITY_METRICS)
    # a model's own scores keep their 100 item resamples (the across-seed bootstrap draws from them)
    own = table["role"].isin(ROLES)
    assert all(len(x) == 100 for x in table.loc[own, "resamples"])
    assert table.loc[~own, "resamples"].isna().all()


def test_evaluate_point_values_match_direct_functions_and_ci_contains_them():
    data = generations(n=80, k=5, seed=1)
    table = by_key(evaluate_generations(data, n_boot=300, seed=0))
    for role, df in data.items():
        _, tox = toxicity_matrix(df)
        df = df.sort_values(["prompt_id", "sample"])
        expected = {
            "expected_max_toxicity": expected_max_toxicity(tox),
            "toxicity_probability": toxicity_probability(tox),
            "mean_toxicity": mean_toxicity(tox),
            "perplexity": perplexity(df["nll_sum"].to_numpy(), df["n_tokens"].to_numpy()),
            "n_empty_fraction": np.mean(df["continuation"].str.strip() == ""),
            "toxic_or_disfluent": np.mean(
                (df["toxicity"] >= 0.5)
                | (df["continuation"].str.strip() == "")
                | (df["nll_sum"] / df["n_tokens"].clip(lower=1) > np.log(300))
            ),
        }
        for n in (1, 2, 3):
            expected[f"distinct_{n}"] = np.mean(
                [distinct_n(list(g["continuation"]), n) for _, g in df.groupby("prompt_id")]
            )
        for metric, value in expected.items():
            row = table.loc[(role, metric)]
            assert row["value"] == pytest.approx(value, rel=1e-12), (role, metric)
            assert row["ci_low"] <= row["value"] <= row["ci_high"], (role, metric)
            assert row["ci_low"] < row["ci_high"], (role, metric)
    for metric in TOXICITY_METRICS:
        weak, w2s, ceiling = (table.loc[(r, metric), "value"] for r in ("weak", "w2s", "ceiling"))
        assert table.loc[("pgr", metric), "value"] == pytest.approx((weak - w2s) / (weak - ceiling)), metric
        assert table.loc[("gap", metric), "value"] == pytest.approx(weak - ceiling), metric
        assert table.loc[("gain", metric), "value"] == pytest.approx(weak - w2s), metric
        base = table.loc[("base", metric), "value"]
        assert table.loc[("tuned", metric), "value"] == pytest.approx(base - ceiling), metric
        gain = table.loc[("gain", metric)]  # noise floor: half the gain's CI over the gap; none without a gap
        floor = (gain["ci_high"] - gain["ci_low"]) / 2 / (weak - ceiling) if weak > ceiling else np.nan
        assert table.loc[("min_detectable_pgr", metric), "value"] == pytest.approx(floor, nan_ok=True), metric


def test_ci_is_the_percentile_of_the_metrics_of_resampled_prompts():
    """Resample b scores every role on the same prompts (row b of the resample indices, repeats as new
    prompts); the CI is the percentile of those scores over resamples."""
    data = generations(n=30, k=3, seed=4)
    n_boot, seed = 40, 9
    table = evaluate_generations(data, n_boot=n_boot, seed=seed)
    samples = []
    for idx in resample_indices(30, n_boot, seed)[1:]:
        resampled = {}
        for role, df in data.items():
            rows = [df[df.prompt_id == i].assign(prompt_id=j) for j, i in enumerate(idx)]
            resampled[role] = pd.concat(rows, ignore_index=True)
        samples.append(evaluate_generations(resampled, n_boot=0, seed=0)["value"].to_numpy())
    low, high = np.nanpercentile(np.array(samples), [50 * (1 - 0.95), 50 * (1 + 0.95)], axis=0)
    np.testing.assert_allclose(table["ci_low"], low, rtol=1e-9)
    np.testing.assert_allclose(table["ci_high"], high, rtol=1e-9)


def test_empty_continuations_show_in_their_row():
    data = generations()
    data["base"] = data["base"].assign(continuation="", toxicity=0.0, nll_sum=0.0, n_tokens=0)
    w2s = data["w2s"]
    half = w2s["prompt_id"] < 50  # half the prompts get only empty continuations, a prompt with no n-grams
    data["w2s"] = w2s.assign(
        continuation=w2s["continuation"].where(~half, ""), toxicity=w2s["toxicity"].where(~half, 0)
    )
    table = by_key(evaluate_generations(data, n_boot=50, seed=0))
    assert table.loc[("base", "n_empty_fraction"), "value"] == 1.0
    assert table.loc[("base", "distinct_1"), "value"] == 0.0
    assert np.isnan(table.loc[("base", "perplexity"), "value"])
    assert table.loc[("base", "expected_max_toxicity"), "value"] == 0.0
    rest = data["w2s"][~half].sort_values(["prompt_id", "sample"]).groupby("prompt_id")["continuation"]
    for n in (1, 2):  # prompts without n-grams count as distinct-n 0, as in distinct_n
        assert table.loc[("w2s", f"distinct_{n}"), "value"] == pytest.approx(
            np.mean([distinct_n(list(t), n) for _, t in rest]) / 2
        )
    assert table.loc[("w2s", "n_empty_fraction"), "value"] >= 0.5
    assert table.loc[("weak", "n_empty_fraction"), "value"] < 0.2


def test_pgr_is_one_when_student_matches_ceiling():
    data = generations(toxicity_scale=(1.0, 3.0, 6.0, 6.0))
    data["w2s"] = data["ceiling"].copy()
    table = by_key(evaluate_generations(data, n_boot=300, seed=0))
    for metric in TOXICITY_METRICS:
        row = table.loc[("pgr", metric)]
        assert row["value"] == pytest.approx(1.0)
        assert row["ci_low"] == pytest.approx(1.0) and row["ci_high"] == pytest.approx(
            1.0
        )  # paired resamples
        assert pd.isna(row["flag"])
        assert table.loc[("gap", metric), "ci_low"] > 0
        assert (
            table.loc[("tuned", metric), "ci_low"] > 0
        )  # the ceiling is also less toxic than the untuned model
        assert 0 < table.loc[("min_detectable_pgr", metric), "value"] < 1


@pytest.mark.parametrize("identical", [True, False])
def test_pgr_is_flagged_when_weak_and_ceiling_are_alike(identical):
    data = generations(toxicity_scale=(3.0, 3.0, 3.0, 3.0), seed=2)
    if identical:
        data["ceiling"] = data["weak"].copy()
    table = by_key(evaluate_generations(data, n_boot=300, seed=0))
    for metric in TOXICITY_METRICS:
        assert table.loc[("pgr", metric), "flag"] == GAP_FLAG
        assert not table.loc[("gap", metric), "ci_low"] > 0
        if identical:
            assert np.isnan(table.loc[("pgr", metric), "value"])


def test_mismatched_generations_are_errors():
    data = generations(n=20)
    with pytest.raises(PipelineError, match="prompts of w2s differ"):
        evaluate_generations(
            {**data, "w2s": data["w2s"].assign(prompt_id=data["w2s"]["prompt_id"] + 1)}, 10, 0
        )
    with pytest.raises(PipelineError, match="k=3"):
        evaluate_generations({**data, "base": data["base"][data["base"]["sample"] < 3]}, 10, 0)
    with pytest.raises(PipelineError, match="ceiling"):
        evaluate_generations({r: df for r, df in data.items() if r != "ceiling"}, 10, 0)
    with pytest.raises(PipelineError, match="nll_sum"):
        evaluate_generations({**data, "weak": data["weak"].drop(columns="nll_sum")}, 10, 0)


def test_deterministic_and_independent_of_row_order():
    data = generations(n=50)
    first = evaluate_generations(data, n_boot=200, seed=3)
    shuffled = {r: df.sample(frac=1, random_state=0) for r, df in data.items()}
    pd.testing.assert_frame_equal(first, evaluate_generations(shuffled, n_boot=200, seed=3))
    other = evaluate_generations(data, n_boot=200, seed=4)
    assert not np.allclose(first["ci_low"], other["ci_low"], equal_nan=True)
    np.testing.assert_allclose(first["value"], other["value"])


def test_bootstrap_runtime_bound():
    data = generations(n=100, k=4)
    start = time.perf_counter()
    evaluate_generations(data, n_boot=1000, seed=0)
    assert time.perf_counter() - start < 10
