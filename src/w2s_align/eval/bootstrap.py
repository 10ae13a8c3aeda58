"""Paired bootstrap over test items, shared by every metric kind: resamples, percentile CIs, PGR and its flag.

"Paired": every model is scored on the same resample, so a difference (gap, PGR) keeps the correlation
between the models and its CI is much narrower than one from independent resamples.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd

GAP_FLAG = "gap within noise"
NEGATIVE_GAP_FLAG = "ceiling worse than weak"


def resample_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """Item indices [1 + n_boot, n]: row 0 is the sample itself (the point estimate), row b the b-th resample.

    The resamples are drawn in one call; row b equals the b-th of n_boot successive `rng.integers(0, n,
    n)`."""
    draws = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    return np.vstack([np.arange(n), draws])


def multiplicities(indices: np.ndarray, n: int) -> np.ndarray:
    """How often each of the n items occurs in each row of an index matrix: [rows, n] float64."""
    rows = len(indices)
    offsets = (np.arange(rows)[:, None] * n + indices).ravel()
    return np.bincount(offsets, minlength=rows * n).reshape(rows, n).astype(np.float64)


def percentile_ci(samples: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile CI per column of [n_boot, k] resample statistics, NaNs left out; NaN where none is left.

    A resample whose gap is exactly 0 has no PGR (NaN); a PGR whose gap is 0 in every resample has no CI."""
    if not len(samples):
        nan = np.full(samples.shape[1:], np.nan)
        return nan, nan.copy()
    with warnings.catch_warnings():  # an all-NaN column warns; its CI is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(samples, [50 * (1 - ci), 50 * (1 + ci)], axis=0)
    return low, high


class Bootstrap(NamedTuple):
    point: np.ndarray  # [k]
    ci_low: np.ndarray  # [k]
    ci_high: np.ndarray  # [k]
    resamples: np.ndarray  # [n_boot, k]: the statistics of every resample of items


def paired_bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray], n: int, n_boot: int, seed: int, ci: float = 0.95
) -> Bootstrap:
    """Point values, percentile CIs and resample values of a statistics vector over n items.

    `statistic` maps an index matrix [rows, n] (see `resample_indices`) to statistics [rows, k], one row per
    resample of items; every model is scored on the same rows."""
    stats = np.asarray(statistic(resample_indices(n, n_boot, seed)), dtype=np.float64)
    return Bootstrap(stats[0], *percentile_ci(stats[1:], ci), stats[1:])


MODEL_ROLES = ("weak", "base", "w2s", "ceiling")  # roles whose rows are a model's own scores


def resample_column(roles: list[str], resamples: np.ndarray) -> pd.Series:
    """The `resamples` column of a long metrics table: for a model's own score (MODEL_ROLES), its value on
    every item resample (the across-seed bootstrap draws from these); none for derived rows (PGR, gaps),
    which the across-seed aggregation recomputes from the models' means."""
    return pd.Series(
        [resamples[:, i].copy() if role in MODEL_ROLES else None for i, role in enumerate(roles)],
        dtype=object,
    )


def seed_item_resamples(replicates: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Two-level bootstrap of means over seeds: `replicates` [S seeds, B item resamples, k statistics] ->
    [n_boot, k]. Each draw resamples the S seeds with replacement, then gives every drawn seed one of its
    item resamples at random (a seed drawn twice gets two), and averages over the drawn seeds. With one seed
    it is that seed's own item resamples, so one seed's CIs equal its run's."""
    n_seeds, n_items, _ = replicates.shape
    if n_seeds == 1:
        return replicates[0]
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, (n_boot, n_seeds))
    items = rng.integers(0, n_items, (n_boot, n_seeds))
    with warnings.catch_warnings():  # a resample whose statistic is NaN in every seed (e.g. one-class AUROC)
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(replicates[seeds, items], axis=1)


def pgr(weak: np.ndarray, w2s: np.ndarray, ceiling: np.ndarray) -> np.ndarray:
    """Performance gap recovered, (w2s - weak) / (ceiling - weak); NaN where the gap is zero."""
    gap = ceiling - weak
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap != 0, (w2s - weak) / gap, np.nan)


def pgr_lower_better(weak: np.ndarray, w2s: np.ndarray, ceiling: np.ndarray) -> np.ndarray:
    """Gap recovered for a lower-is-better metric, (weak - w2s) / (weak - ceiling); NaN where the gap is
    zero."""
    gap = np.asarray(weak) - np.asarray(ceiling)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap != 0, (np.asarray(weak) - np.asarray(w2s)) / gap, np.nan)


def gap_flag(low: float, high: float) -> str | None:
    """Why a PGR is not a number to read: its gap's CI reaches 0, or lies wholly below it."""
    if low > 0:
        return None
    return NEGATIVE_GAP_FLAG if high < 0 else GAP_FLAG


def pgr_flags(roles: list[str], low: np.ndarray, high: np.ndarray) -> list[str | None]:
    """Flag of every row of a long table whose "pgr" rows are each followed by their "gap" row."""
    return [gap_flag(low[i + 1], high[i + 1]) if role == "pgr" else None for i, role in enumerate(roles)]


def noise_floor(table: pd.DataFrame, gap_role: str = "gap") -> pd.DataFrame:
    """Minimum detectable PGR per metric: the half-width of the gain's bootstrap CI (w2s over weak) over the
    gap (ceiling over weak; its rows are `gap_role`), i.e. the smallest PGR whose gain over the weak model
    would stand out from test-set noise."""
    gain = table[table.role == "gain"].set_index("metric")
    gap = table[table.role == gap_role].set_index("metric")["value"]
    with np.errstate(divide="ignore", invalid="ignore"):
        value = ((gain["ci_high"] - gain["ci_low"]) / 2 / gap.loc[gain.index]).where(gap.loc[gain.index] > 0)
    return pd.DataFrame(
        {
            "role": "min_detectable_pgr",
            "metric": gain.index,
            "value": value.to_numpy(),
            "ci_low": np.nan,
            "ci_high": np.nan,
            "flag": pd.array([None] * len(gain), dtype="string"),
        }
    )
