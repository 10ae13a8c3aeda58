"""Aggregation over seeds and the number formats every table shares."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from w2s_align.eval.bootstrap import MODEL_ROLES, gap_flag, percentile_ci, seed_item_resamples
from w2s_align.eval.generation import TOXICITY_METRICS as LOWER_IS_BETTER

RUN_KEYS = ["task", "weak_model", "strong_model", "strategy"]
# What the workflow says a run is (settings/paths.run_identity), kept through aggregation: its kind of weak
# supervision, its task's kind, and which control it is ("" for a weak-to-strong run)
LABELS = ["track", "kind", "control"]
# The metric a PGR is read on: per task kind (the task's tables and figures) and per track (tracks side by
# side).
KIND_PRIMARY = {"classification": "accuracy", "generation": "expected_max_toxicity"}
TRACK_PRIMARY = {
    "labels": "accuracy",
    "demonstrations": "expected_max_toxicity",
    "preferences": "preference_accuracy",
}
TRACKS = {"labels": "weak labels", "demonstrations": "weak demonstrations", "preferences": "weak preferences"}


def mean_ci(values: pd.Series, level: float = 0.95) -> tuple[float, float, int]:
    """Mean and half-width of a t-interval across seeds (NaN half-width for one seed)."""
    v = values.dropna().to_numpy(dtype=float)
    if len(v) == 0:
        return np.nan, np.nan, 0
    if len(v) == 1:
        return float(v[0]), np.nan, 1
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(half), len(v)


DERIVED = ("pgr", "gap", "gain", "tuned")  # rows computed from the models' scores (eval.*: DIFFERENCES)
AGGREGATE_SEED = 0  # random numbers of the two-level bootstrap across seeds


def across_seeds(runs: pd.DataFrame, ci: float = 0.95) -> pd.DataFrame:
    """One row per (task, weak, strong, strategy, [track, kind,] role, metric) over every seed, none left out.

    A model's own score (weak, base, w2s, ceiling): the mean over seeds, `low`/`high` its 95% t-interval
    across seeds (one seed: the run's bootstrap CI) and `sd` the seed-to-seed standard deviation. A PGR, gap,
    gain or tuned row: the ratio (difference) of the models' means over seeds, e.g. PGR = (mean w2s − mean
    weak) / (mean ceiling − mean weak), with a percentile CI from a two-level bootstrap (seeds resampled,
    then test items within each seed: `eval.bootstrap.seed_item_resamples` over the runs' `resamples`); its
    `sd` is the spread of the per-seed values. A PGR whose gap's CI reaches 0 gets `flag` (as a run's does)
    and is not a number to read: the tables show the points recovered (gain) instead. `n_flagged`: seeds
    whose own PGR is flagged."""
    rows = []
    keys = RUN_KEYS + [c for c in LABELS if c in runs.columns]
    for key, grp in runs.groupby(keys, sort=True):
        ident = dict(zip(keys, key))
        for metric, m in grp.groupby("metric", sort=True):
            derived = _derived(m, metric, ci) if m.role.isin(DERIVED).any() else {}
            for role, r in m.groupby("role", sort=True):
                mean, half, n = mean_ci(r["value"])
                if role in derived:
                    mean, low, high, flag = derived[role]
                    half, n = np.nan, m.seed.nunique()  # every seed counts, a NaN per-seed ratio too
                elif n == 1:
                    usable = r[r["value"].notna()].iloc[0]
                    low, high, flag = usable["ci_low"], usable["ci_high"], None
                else:
                    low, high, flag = mean - half, mean + half, None
                rows.append(
                    {
                        **ident,
                        "role": role,
                        "metric": metric,
                        "mean": mean,
                        "ci_half": half,
                        "low": low,
                        "high": high,
                        "sd": float(r["value"].std(ddof=1)) if n > 1 else np.nan,  # seed-to-seed spread
                        "n_seeds": n,
                        "n_flagged": int(r["flag"].notna().sum()) if role == "pgr" else 0,
                        "flag": flag,
                    }
                )
    out = pd.DataFrame(rows)
    if len(out):
        out["flag"] = out["flag"].astype("string")
    return out


def _derived(m: pd.DataFrame, metric: str, ci: float) -> dict[str, tuple[float, float, float, str | None]]:
    """(value, low, high, flag) of every derived role of one metric over seeds, from the models' means; the
    minimum detectable PGR as the half-width of the gain's CI over the gap (`eval.bootstrap.noise_floor`)."""
    models = [r for r in MODEL_ROLES if r in set(m.role)]
    ref = "weak" if "weak" in models else "base"
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    own = m[m.role.isin(models)].set_index(["seed", "role"])
    cells = [[(s, r) for r in models] for s in sorted(own.index.unique("seed"))]
    point = np.array([[own.loc[c, "value"] for c in seed] for seed in cells]).mean(axis=0)
    if "resamples" not in own or own["resamples"].isna().any():  # metrics written before runs kept them
        draws = np.empty((0, len(models)))
    else:  # [seeds, item resamples, models]
        replicates = np.stack([np.stack([own.loc[c, "resamples"] for c in seed], axis=1) for seed in cells])
        draws = seed_item_resamples(replicates, replicates.shape[1], AGGREGATE_SEED)

    def values(x: np.ndarray) -> dict[str, np.ndarray]:
        at = {r: x[..., i] for i, r in enumerate(models)}
        gain, gap = sign * (at["w2s"] - at[ref]), sign * (at["ceiling"] - at[ref])
        with np.errstate(divide="ignore", invalid="ignore"):
            out = {"pgr": np.where(gap != 0, gain / gap, np.nan), "gap": gap, "gain": gain}
        if "base" in at:
            out["tuned"] = sign * (at["ceiling"] - at["base"])
        return out

    at_point, boot = values(point), values(draws)
    result = {}
    for role in set(m.role) & set(at_point):
        low, high = percentile_ci(boot[role][:, None], ci)
        result[role] = (float(at_point[role]), float(low[0]), float(high[0]), None)
    gap_low, gap_high = percentile_ci(boot["gap"][:, None], ci)
    if "pgr" in result:
        result["pgr"] = (*result["pgr"][:3], gap_flag(gap_low[0], gap_high[0]))
    gain_low, gain_high = percentile_ci(boot["gain"][:, None], ci)
    gap = float(at_point["gap"])
    if "min_detectable_pgr" in set(m.role):
        noise = (gain_high[0] - gain_low[0]) / 2 / gap if gap > 0 else np.nan
        result["min_detectable_pgr"] = (noise, np.nan, np.nan, None)
    return result


def fmt(value: float, low: float | None = None, high: float | None = None) -> str:
    if pd.isna(value):
        return "n/a"
    if low is None or pd.isna(low):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def metric_value(r: pd.DataFrame, role: str, metric: str, column: str = "value"):
    row = r[(r.role == role) & (r.metric == metric)]
    return row[column].iloc[0] if len(row) else np.nan


def primary_metric(runs: pd.DataFrame, task: str) -> str:
    """The metric a task's PGR is read on, from its kind (a column of every metric table)."""
    return KIND_PRIMARY[runs.loc[runs.task == task, "kind"].iloc[0]]


def generation_tasks(runs: pd.DataFrame) -> list[str]:
    return sorted(runs.loc[runs.kind == "generation", "task"].unique())


def run_pgr_text(r: pd.DataFrame, metric: str, gap: str = "gap") -> str:
    """A run's PGR cell on `metric` (r: the run's long rows): the value with its bootstrap CI, or, when the
    gap's CI reaches 0, the flag and the gap (role `gap`; with the untuned base as reference, `tuned`)."""
    row = r[(r.role == "pgr") & (r.metric == metric)]
    if row.empty:
        return "n/a"
    if pd.notna(row["flag"].iloc[0]):
        return f"— ({row['flag'].iloc[0]}: gap {fmt(metric_value(r, gap, metric))})"
    return fmt(*(metric_value(r, "pgr", metric, c) for c in ("value", "ci_low", "ci_high")))


def pgr_text(rows: pd.DataFrame, digits: int = 2) -> str:
    """The headline cell of an aggregate (rows of `across_seeds` for one run key and metric, indexed by role):
    PGR of means with its two-level CI, or, when the gap's CI reaches 0, the points recovered (gain) with
    theirs and why no ratio is shown; then how many seeds had their own gap within noise."""
    if "pgr" not in rows.index or pd.isna(rows.loc["pgr", "mean"]) and pd.isna(rows.loc["pgr", "flag"]):
        return "n/a"
    r = rows.loc["pgr"]
    if pd.notna(r["flag"]):
        g = rows.loc["gain"]
        text = f"— ({r['flag']}; recovered {g['mean']:+.3f} [{g['low']:+.3f}, {g['high']:+.3f}])"
    else:
        text = f"{r['mean']:.{digits}f}" + (
            f" [{r['low']:.{digits}f}, {r['high']:.{digits}f}]" if pd.notna(r["low"]) else ""
        )
    if r["n_flagged"]:
        text += f" ({int(r['n_flagged'])} of {int(r['n_seeds'])} seeds: own gap within noise)"
    return text
