"""Aggregate per-run metric parquet files into results/tables/summary.{csv,md}."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import stats

from w2s_align.io import read_parquet, write_parquet, write_text
from w2s_align.metrics import GAP_FLAG

log = logging.getLogger(__name__)

RUN_KEYS = ["task", "weak_model", "strong_model", "strategy"]
SHOWN_METRICS = ("accuracy", "auroc")


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
    """Mean ± CI over seeds per (task, weak, strong, strategy, role, metric); flagged PGRs are left out.

    `low`/`high` are the t-interval across seeds, or the run's own bootstrap CI when there is one seed."""
    rows = []
    for key, grp in runs.groupby(RUN_KEYS + ["role", "metric"], sort=True):
        usable = grp[grp["flag"].isna()] if key[-2] == "pgr" else grp
        mean, half, n = mean_ci(usable["value"])
        if n == 1:
            low, high = usable["ci_low"].iloc[0], usable["ci_high"].iloc[0]
        else:
            low, high = mean - half, mean + half
        rows.append({**dict(zip(RUN_KEYS + ["role", "metric"], key)), "mean": mean, "ci_half": half, "low": low,
                     "high": high, "n_seeds": n, "n_flagged": int(grp["flag"].notna().sum())})
    return pd.DataFrame(rows)


def _fmt(value: float, low: float | None = None, high: float | None = None) -> str:
    if pd.isna(value):
        return "n/a"
    if low is None or pd.isna(low):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def per_run_markdown(runs: pd.DataFrame, metric: str) -> list[str]:
    lines = [f"| task | weak | strong | strategy | seed | weak | w2s | ceiling | PGR [95% CI] |", "|" + "---|" * 9]
    sub = runs[runs.metric == metric]
    for key, grp in sub.groupby(RUN_KEYS + ["seed"], sort=True):
        r = grp.set_index("role")
        p = r.loc["pgr"]
        pgr_text = f"— ({GAP_FLAG}: gap {_fmt(r.loc['gap', 'value'])})" if pd.notna(p["flag"]) else _fmt(
            p["value"], p["ci_low"], p["ci_high"])
        cells = [*map(str, key), *(_fmt(r.loc[x, "value"], r.loc[x, "ci_low"], r.loc[x, "ci_high"])
                                   for x in ("weak", "w2s", "ceiling")), pgr_text]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def seeds_markdown(agg: pd.DataFrame, metric: str) -> list[str]:
    lines = ["| task | weak | strong | strategy | seeds | weak | w2s | ceiling | PGR |", "|" + "---|" * 9]
    sub = agg[agg.metric == metric]
    for key, grp in sub.groupby(RUN_KEYS, sort=True):
        r = grp.set_index("role")
        cell = lambda role: "n/a" if pd.isna(r.loc[role, "mean"]) else (
            f"{r.loc[role, 'mean']:.3f}" + ("" if pd.isna(r.loc[role, "ci_half"]) else f" ± {r.loc[role, 'ci_half']:.3f}"))
        pgr_cell = cell("pgr")
        if r.loc["pgr", "n_flagged"]:
            pgr_cell += f" ({int(r.loc['pgr', 'n_flagged'])} seed(s) flagged: {GAP_FLAG})"
        lines.append("| " + " | ".join([*map(str, key), str(int(r.loc["weak", "n_seeds"])), cell("weak"),
                                         cell("w2s"), cell("ceiling"), pgr_cell]) + " |")
    return lines


def strategy_markdown(agg: pd.DataFrame, metric: str) -> list[str]:
    """Strategy x task: PGR mean ± CI (seeds used / flagged), one row per (weak, strong, strategy)."""
    sub = agg[(agg.metric == metric) & (agg.role == "pgr")]
    tasks = sorted(sub["task"].unique())
    lines = ["| weak | strong | strategy | " + " | ".join(tasks) + " |", "|" + "---|" * (3 + len(tasks))]
    for key, grp in sub.groupby(["weak_model", "strong_model", "strategy"], sort=True):
        cells = []
        for task in tasks:
            row = grp[grp.task == task]
            if row.empty:
                cells.append("")
                continue
            r = row.iloc[0]
            text = "—" if pd.isna(r["mean"]) else f"{r['mean']:.2f}" + (
                "" if pd.isna(r["ci_half"]) else f" ± {r['ci_half']:.2f}")
            if pd.isna(r["ci_half"]) and pd.notna(r["mean"]):
                text += f" [{r['low']:.2f}, {r['high']:.2f}]"
            text += f" (n={int(r['n_seeds'])}" + (f", {int(r['n_flagged'])} flagged" if r["n_flagged"] else "") + ")"
            cells.append(text)
        lines.append("| " + " | ".join([*key, *cells]) + " |")
    return lines


def summarize(metric_files: list[str], out_csv: str, out_parquet: str, out_md: str) -> None:
    runs = pd.concat([read_parquet(f, RUN_KEYS + ["seed", "role", "metric", "value"]) for f in metric_files],
                     ignore_index=True)
    agg = across_seeds(runs)
    write_text(runs.to_csv(index=False), out_csv)
    write_parquet(runs, out_parquet)
    md = ["# w2s-align results", "",
          "Test-set scores of the weak supervisor, the weak-to-strong student (w2s) and the strong ceiling.",
          "PGR = (w2s − weak) / (ceiling − weak). Per run: 95% paired bootstrap CI over test items; a PGR whose",
          f"ceiling−weak gap has a CI reaching 0 is shown as '{GAP_FLAG}'. Across seeds: mean ± 95% t-interval.",
          "All metrics (balanced accuracy, F1, agreement, gaps) are in summary.csv.", "",
          "## PGR (accuracy) by strategy", "",
          "Mean ± 95% t-interval across seeds (one seed: its bootstrap CI); n = seeds whose PGR is not flagged.", "",
          *strategy_markdown(agg, "accuracy"), ""]
    for metric in SHOWN_METRICS:
        md += [f"## {metric}: per run", "", *per_run_markdown(runs, metric), "",
               f"## {metric}: across seeds", "", *seeds_markdown(agg, metric), ""]
    write_text("\n".join(md), out_md)
    log.info("summarized %d runs into %s and %s", len(metric_files), out_csv, out_md)
