"""Aggregation over seeds and the number formats every table shares."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

RUN_KEYS = ["task", "weak_model", "strong_model", "strategy"]
LABELS = [
    "track",
    "kind",
]  # what the workflow says a run is (settings/paths.run_identity); kept through aggregation
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


def across_seeds(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± CI over seeds per (task, weak, strong, strategy, [track, kind,] role, metric); flagged PGRs are
    left out.

    `low`/`high` are the t-interval across seeds, or the run's own bootstrap CI when there is one seed."""
    rows = []
    keys = RUN_KEYS + [c for c in LABELS if c in runs.columns] + ["role", "metric"]
    for key, grp in runs.groupby(keys, sort=True):
        usable = grp[grp["flag"].isna()] if key[-2] == "pgr" else grp
        mean, half, n = mean_ci(usable["value"])
        if n == 1:
            low, high = usable["ci_low"].iloc[0], usable["ci_high"].iloc[0]
        else:
            low, high = mean - half, mean + half
        sd = float(usable["value"].std(ddof=1)) if n > 1 else np.nan  # seed-to-seed spread
        rows.append(
            {
                **dict(zip(keys, key)),
                "mean": mean,
                "ci_half": half,
                "low": low,
                "high": high,
                "sd": sd,
                "n_seeds": n,
                "n_flagged": int(grp["flag"].notna().sum()),
            }
        )
    return pd.DataFrame(rows)


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
