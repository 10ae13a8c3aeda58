"""Test-set metrics for weak, W2S student and ceiling; PGR with paired bootstrap CIs.

`METRICS` (scikit-learn) defines the numbers; `resample_scores` computes the same numbers for every bootstrap
resample at once, following scikit-learn's own steps for binary labels so that every value is identical
(tests/test_metrics.py compares the two on degenerate resamples too).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from w2s_align.errors import PipelineError
from w2s_align.eval.bootstrap import noise_floor, paired_bootstrap, pgr, pgr_flags, resample_column
from w2s_align.files import read_split, write_parquet

log = logging.getLogger(__name__)

ROLES = ("weak", "w2s", "ceiling")
METRICS = {
    "accuracy": lambda y, p, h: accuracy_score(y, h),
    "balanced_accuracy": lambda y, p, h: balanced_accuracy_score(y, h),
    "f1_weighted": lambda y, p, h: f1_score(y, h, average="weighted"),
    "f1_macro": lambda y, p, h: f1_score(y, h, average="macro"),
    "auroc": lambda y, p, h: roc_auc_score(y, p) if len(np.unique(y)) > 1 else np.nan,
}
# Beside the metrics, how a model relates to the weak supervisor on the test rows (Lang et al. 2024's
# pseudolabel correction; Charikar et al. 2024's misfit): agreement with its hard predictions; correction,
# the accuracy on the rows the supervisor gets wrong; retention, the accuracy on the rows it gets right;
# misfit, 1 - agreement (the distance whose size predicts the gain over the supervisor).
SCORES = (*METRICS, "agreement", "correction", "retention", "misfit")
COLLAPSED = (
    0.95  # a model predicting one class for at least this fraction of test rows is flagged "collapsed"
)


def score_table(y: np.ndarray, p1: dict[str, np.ndarray], weak_hard: np.ndarray) -> np.ndarray:
    """Array [role, score] of every metric, then agreement, correction, retention and misfit (SCORES)."""
    weak_right = weak_hard == y
    rows = []
    for role in ROLES:
        hard = (p1[role] >= 0.5).astype(int)
        correct = hard == y
        on = [correct[weak_right == right] for right in (False, True)]
        agreement = np.mean(hard == weak_hard)
        rows.append(
            [fn(y, p1[role], hard) for fn in METRICS.values()]
            + [agreement, *(x.mean() if len(x) else np.nan for x in on), 1 - agreement]
        )
    return np.array(rows, dtype=np.float64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0.0 where den is 0 (scikit-learn's zero_division="warn" value)."""
    return np.where(den > 0, num / np.maximum(den, 1), 0.0)


def _auroc(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """roc_auc_score of every row of [rows, n] labels (bool) and scores; NaN for a row with one class.

    scikit-learn's steps: ROC points at each distinct score (descending), collinear points dropped, then the
    trapezoid sum of each row on its own (a pairwise sum, whose rounding depends on the number of points)."""
    order = np.argsort(scores, axis=1, kind="stable")[:, ::-1]  # order within tied scores changes no sum
    ranked = np.take_along_axis(scores, order, axis=1)
    tps_all = np.cumsum(np.take_along_axis(y, order, axis=1), axis=1, dtype=np.float64)
    new_score = np.diff(ranked, axis=1) != 0
    n_pos = y.sum(axis=1)
    out = np.full(len(y), np.nan)
    for r in np.flatnonzero((n_pos > 0) & (n_pos < y.shape[1])):
        ends = np.append(np.flatnonzero(new_score[r]), y.shape[1] - 1)
        tps = tps_all[r, ends]
        fps = 1 + ends.astype(np.float64) - tps
        if len(fps) > 2:
            keep = np.concatenate([[True], np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), [True]])
            fps, tps = fps[keep], tps[keep]
        fpr = np.concatenate([[0.0], fps]) / fps[-1]
        tpr = np.concatenate([[0.0], tps]) / tps[-1]
        out[r] = np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2.0)
    return out


def resample_scores(y: np.ndarray, p1: dict[str, np.ndarray], indices: np.ndarray) -> np.ndarray:
    """`score_table` of every row of an index matrix [rows, n], vectorised: [rows, role, metric].

    Labels must be 0/1. Counts are exact integers and each metric is the same arithmetic, in the same order,
    as scikit-learn's over the labels present in the resample, so the floats are identical."""
    n = indices.shape[1]
    pos = y.astype(bool)[indices]
    n_pos = pos.sum(axis=1)
    n_neg = n - n_pos
    weak_hard = (p1["weak"] >= 0.5)[indices]
    weak_right = weak_hard == pos
    n_right = weak_right.sum(axis=1)
    out = np.empty((len(indices), len(ROLES), len(SCORES)))
    for i, role in enumerate(ROLES):
        hard = (p1[role] >= 0.5)[indices]
        tp = (hard & pos).sum(axis=1)
        fp = hard.sum(axis=1) - tp
        fn, tn = n_pos - tp, n_neg - fp
        f1_pos, f1_neg = _ratio(2 * tp, 2 * tp + fp + fn), _ratio(2 * tn, 2 * tn + fn + fp)
        present = (2 * tp + fp + fn > 0).astype(int) + (2 * tn + fn + fp > 0)  # labels in y or predictions
        out[:, i, 0] = (tp + tn) / n
        out[:, i, 1] = (_ratio(tn, n_neg) + _ratio(tp, n_pos)) / ((n_neg > 0).astype(int) + (n_pos > 0))
        out[:, i, 2] = (f1_neg * n_neg + f1_pos * n_pos) / n
        out[:, i, 3] = (f1_neg + f1_pos) / present
        out[:, i, 4] = _auroc(pos, p1[role][indices])
        out[:, i, 5] = (hard == weak_hard).sum(axis=1) / n
        correct = hard == pos
        with np.errstate(divide="ignore", invalid="ignore"):  # no row the supervisor gets wrong (or right)
            out[:, i, 6] = np.where(n > n_right, (correct & ~weak_right).sum(axis=1) / (n - n_right), np.nan)
            out[:, i, 7] = np.where(n_right > 0, (correct & weak_right).sum(axis=1) / n_right, np.nan)
        out[:, i, 8] = 1 - out[:, i, 5]
    return out


def _check_inputs(y: np.ndarray, p1: dict[str, np.ndarray]) -> None:
    if len(y) == 0:
        raise PipelineError("no test rows to evaluate")
    if not np.isin(y, (0, 1)).all():
        raise PipelineError(f"test labels must be 0/1, found {sorted(set(np.unique(y)) - {0, 1})[:5]}")
    for role in ROLES:
        if len(p1[role]) != len(y) or not np.isfinite(p1[role]).all():
            raise PipelineError(f"{role} predictions must be {len(y)} finite probabilities")


def evaluate(
    y: np.ndarray, p1: dict[str, np.ndarray], n_boot: int, seed: int, ci: float = 0.95
) -> pd.DataFrame:
    """Point values with paired bootstrap CIs over test items for every role, metric and PGR.

    A PGR is flagged when the ceiling-weak gap's own CI reaches zero: its ratio is then noise.
    """
    _check_inputs(y, p1)
    n_metrics = len(METRICS)

    def statistic(indices):
        table = resample_scores(y, p1, indices)
        weak, w2s, ceiling = (table[:, ROLES.index(r), :n_metrics] for r in ("weak", "w2s", "ceiling"))
        pgr_gap = np.stack([pgr(weak, w2s, ceiling), ceiling - weak, w2s - weak], axis=2)  # [rows, metric, 3]
        return np.concatenate([table.reshape(len(indices), -1), pgr_gap.reshape(len(indices), -1)], axis=1)

    boot = paired_bootstrap(statistic, len(y), n_boot, seed, ci)
    keys = [(r, m) for r in ROLES for m in SCORES] + [(r, m) for m in METRICS for r in ("pgr", "gap", "gain")]
    roles = [r for r, _ in keys]
    table = pd.DataFrame(
        {
            "role": roles,
            "metric": [m for _, m in keys],
            "value": boot.point,
            "ci_low": boot.ci_low,
            "ci_high": boot.ci_high,
            "flag": pd.array(pgr_flags(roles, boot.ci_low, boot.ci_high), dtype="string"),
            "resamples": resample_column(roles, boot.resamples),
        }
    )
    return pd.concat([table, noise_floor(table), balance_rows(p1)], ignore_index=True)


def balance_rows(p1: dict[str, np.ndarray]) -> pd.DataFrame:
    """Fraction of test rows in each model's majority predicted class; "collapsed" at COLLAPSED or more."""
    majority = [max(np.mean(p1[r] >= 0.5), np.mean(p1[r] < 0.5)) for r in ROLES]
    return pd.DataFrame(
        {
            "role": list(ROLES),
            "metric": "majority_fraction",
            "value": majority,
            "ci_low": np.nan,
            "ci_high": np.nan,
            "flag": pd.array(["collapsed" if m >= COLLAPSED else None for m in majority], dtype="string"),
        }
    )


def evaluate_run(
    weak_labels: str, student: str, ceiling: str, out: str, identity: dict, n_boot: int, seed: int
) -> None:
    """Join the three models' test predictions by row id and write the run's long-format metrics."""
    weak = read_split(weak_labels, "test", ["id", "gt_label", "weak_p1"]).set_index("id")
    preds = {
        "w2s": read_split(student, "test", ["id", "pred_p1"]).set_index("id"),
        "ceiling": read_split(ceiling, "test", ["id", "pred_p1"]).set_index("id"),
    }
    for role, df in preds.items():
        if set(df.index) != set(weak.index):
            raise PipelineError(
                f"test rows of {student if role == 'w2s' else ceiling} differ from those of "
                f"{weak_labels}; were they made from different splits?"
            )
    y = weak["gt_label"].to_numpy()
    p1 = {
        "weak": weak["weak_p1"].to_numpy(),
        **{r: df.loc[weak.index, "pred_p1"].to_numpy() for r, df in preds.items()},
    }
    labels = read_split(weak_labels, "weak_label", ["gt_label", "weak_hard"])
    table = pd.concat(
        [
            evaluate(y, p1, n_boot, seed),
            pd.DataFrame(
                {
                    "role": ["weak_labels", "ground_truth"],
                    "metric": "positive_fraction",
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                    "value": [
                        labels["weak_hard"].mean(),
                        labels["gt_label"].mean(),
                    ],  # the students' training rows
                    "flag": pd.array([None, None], dtype="string"),
                }
            ),
        ],
        ignore_index=True,
    )
    table.insert(0, "n_test", len(y))
    for key, value in reversed(identity.items()):
        table.insert(0, key, value)
    acc = table[table.metric == "accuracy"].set_index("role")["value"]
    log.info(
        "accuracy: weak %.4f, w2s %.4f, ceiling %.4f, PGR %.3f",
        acc["weak"],
        acc["w2s"],
        acc["ceiling"],
        acc["pgr"],
    )
    write_parquet(table, out)
