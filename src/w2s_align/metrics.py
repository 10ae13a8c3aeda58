"""Test-set metrics for weak, W2S student and ceiling; PGR with paired bootstrap CIs."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from w2s_align.io import PipelineError, read_split, write_parquet

log = logging.getLogger(__name__)

ROLES = ("weak", "w2s", "ceiling")
METRICS = {
    "accuracy": lambda y, p, h: accuracy_score(y, h),
    "balanced_accuracy": lambda y, p, h: balanced_accuracy_score(y, h),
    "f1_weighted": lambda y, p, h: f1_score(y, h, average="weighted"),
    "f1_macro": lambda y, p, h: f1_score(y, h, average="macro"),
    "auroc": lambda y, p, h: roc_auc_score(y, p) if len(np.unique(y)) > 1 else np.nan,
}
GAP_FLAG = "gap within noise"
NEGATIVE_GAP_FLAG = "ceiling worse than weak"


def gap_flag(low: float, high: float) -> str | None:
    """Why a PGR is not a number to read: its gap's CI reaches 0, or lies wholly below it."""
    if low > 0:
        return None
    return NEGATIVE_GAP_FLAG if high < 0 else GAP_FLAG


def pgr(weak: np.ndarray, w2s: np.ndarray, ceiling: np.ndarray) -> np.ndarray:
    """Performance gap recovered, (w2s - weak) / (ceiling - weak); NaN where the gap is zero."""
    gap = ceiling - weak
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap != 0, (w2s - weak) / gap, np.nan)


def score_table(y: np.ndarray, p1: dict[str, np.ndarray], weak_hard: np.ndarray) -> np.ndarray:
    """Array [role, metric] of every metric plus student-supervisor agreement (last column)."""
    rows = []
    for role in ROLES:
        hard = (p1[role] >= 0.5).astype(int)
        rows.append([fn(y, p1[role], hard) for fn in METRICS.values()] + [np.mean(hard == weak_hard)])
    return np.array(rows, dtype=np.float64)


def evaluate(y: np.ndarray, p1: dict[str, np.ndarray], n_boot: int, seed: int, ci: float = 0.95) -> pd.DataFrame:
    """Point values with paired bootstrap CIs over test items for every role, metric and PGR.

    A PGR is flagged when the ceiling-weak gap's own CI reaches zero: its ratio is then noise.
    """
    weak_hard = (p1["weak"] >= 0.5).astype(int)
    names = [*METRICS, "agreement"]
    n_metrics = len(METRICS)

    def statistic(idx):
        table = score_table(y[idx], {r: p[idx] for r, p in p1.items()}, weak_hard[idx])
        gaps = table[2, :n_metrics] - table[0, :n_metrics]
        return np.concatenate([table.ravel(), pgr(table[0, :n_metrics], table[1, :n_metrics], table[2, :n_metrics]),
                               gaps])

    n = len(y)
    point = statistic(np.arange(n))
    rng = np.random.default_rng(seed)
    samples = np.array([statistic(rng.integers(0, n, n)) for _ in range(n_boot)])
    # percentile CIs; a resample whose gap is exactly 0 has no PGR and is left out (nan)
    low, high = np.nanpercentile(samples, [50 * (1 - ci), 50 * (1 + ci)], axis=0)
    rows = []
    k = 0
    for role in ROLES:
        for name in names:
            rows.append({"role": role, "metric": name, "value": point[k], "ci_low": low[k], "ci_high": high[k]})
            k += 1
    for i, name in enumerate(METRICS):
        gap_k = k + n_metrics + i
        flag = gap_flag(low[gap_k], high[gap_k])
        rows.append({"role": "pgr", "metric": name, "value": point[k + i], "ci_low": low[k + i],
                     "ci_high": high[k + i], "flag": flag})
        rows.append({"role": "gap", "metric": name, "value": point[gap_k], "ci_low": low[gap_k],
                     "ci_high": high[gap_k]})
    return pd.DataFrame(rows).astype({"flag": "string"})


def evaluate_run(weak_labels: str, student: str, ceiling: str, out: str, identity: dict, n_boot: int,
                 seed: int) -> None:
    """Join the three models' test predictions by row id and write the run's long-format metrics."""
    weak = read_split(weak_labels, "test", ["id", "gt_label", "weak_p1"]).set_index("id")
    preds = {"w2s": read_split(student, "test", ["id", "pred_p1"]).set_index("id"),
             "ceiling": read_split(ceiling, "test", ["id", "pred_p1"]).set_index("id")}
    for role, df in preds.items():
        if set(df.index) != set(weak.index):
            raise PipelineError(f"test rows of {student if role == 'w2s' else ceiling} differ from those of "
                                f"{weak_labels}; were they made from different splits?")
    y = weak["gt_label"].to_numpy()
    p1 = {"weak": weak["weak_p1"].to_numpy(), **{r: df.loc[weak.index, "pred_p1"].to_numpy() for r, df in preds.items()}}
    table = evaluate(y, p1, n_boot, seed)
    table.insert(0, "n_test", len(y))
    for key, value in reversed(identity.items()):
        table.insert(0, key, value)
    acc = table[table.metric == "accuracy"].set_index("role")["value"]
    log.info("accuracy: weak %.4f, w2s %.4f, ceiling %.4f, PGR %.3f", acc["weak"], acc["w2s"], acc["ceiling"],
             acc["pgr"])
    write_parquet(table, out)
