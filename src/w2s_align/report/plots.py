"""Figures a researcher reads: scores of weak / W2S / ceiling per metric, and PGR by strategy."""

from __future__ import annotations

import logging

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from w2s_align.errors import PipelineError  # noqa: E402
from w2s_align.files import read_parquet, write_atomic  # noqa: E402
from w2s_align.models.common import read_meta  # noqa: E402
from w2s_align.report.aggregate import (  # noqa: E402
    KIND_PRIMARY,
    LABELS,
    RUN_KEYS,
    TRACK_PRIMARY,
    across_seeds,
    primary_metric,
)

log = logging.getLogger(__name__)
LADDER_STRATEGY = "naive"  # the ladder figure's students (other strategies: the PGR-by-strategy figure)

SCORE_METRICS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced acc.",
    "f1_weighted": "F1 (weighted)",
    "auroc": "AUROC",
}
TOXICITY_METRICS = {
    "expected_max_toxicity": "expected max. toxicity",
    "toxicity_probability": "toxicity probability",
    "mean_toxicity": "mean toxicity",
    "toxic_or_disfluent": "toxic or disfluent",
}


def _save(fig, path: str) -> None:
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=130, bbox_inches="tight"))
    plt.close(fig)


def _errors(rows: pd.DataFrame) -> np.ndarray:
    """Asymmetric error bars from low/high around the mean (0 where unknown)."""
    lo = (rows["mean"] - rows["low"]).clip(lower=0).fillna(0)
    hi = (rows["high"] - rows["mean"]).clip(lower=0).fillna(0)
    return np.vstack([lo.to_numpy(), hi.to_numpy()])


def _readable(rows: pd.DataFrame) -> pd.DataFrame:
    """PGR rows with mean and CI blanked where the gap is within noise (`flag`): no bar for a noise ratio."""
    rows = rows.copy()
    noise = rows["flag"].notna() if "flag" in rows else pd.Series(False, index=rows.index)
    rows.loc[noise, ["mean", "low", "high"]] = np.nan
    return rows


def is_generation(agg: pd.DataFrame, task: str) -> bool:
    return primary_metric(agg, task) == KIND_PRIMARY["generation"]


def model_groups(sub: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows) per model: weak supervisors, untuned bases, W2S students, ceilings."""
    groups: list[tuple[str, pd.DataFrame]] = []
    for weak, g in sub[sub.role == "weak"].groupby("weak_model"):
        groups.append((f"weak\n{weak}", g.drop_duplicates("metric")))
    for strong, g in sub[sub.role == "base"].groupby("strong_model"):
        groups.append((f"base (untuned)\n{strong}", g.drop_duplicates("metric")))
    for (weak, strong, strategy), g in sub[sub.role == "w2s"].groupby(
        ["weak_model", "strong_model", "strategy"]
    ):
        groups.append((f"W2S {strategy}\n{weak}→{strong}", g))
    for strong, g in sub[sub.role == "ceiling"].groupby("strong_model"):
        groups.append((f"ceiling\n{strong}", g.drop_duplicates("metric")))
    return groups


def _ci_note(sub: pd.DataFrame) -> str:
    seeds = int(sub["n_seeds"].max())
    return f"mean ± 95% CI over {seeds} seeds" if seeds > 1 else "bootstrap 95% CI"


def scores_figure(agg: pd.DataFrame, task: str, path: str) -> None:
    """Grouped bars: weak, (base,) one W2S student per (weak, strong, strategy), ceiling; a bar per metric."""
    generation = is_generation(agg, task)
    metrics = TOXICITY_METRICS if generation else SCORE_METRICS
    sub = agg[(agg.task == task) & agg.metric.isin(metrics)]
    groups = model_groups(sub)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) + 2), 4.2))
    width = 0.8 / len(metrics)
    x = np.arange(len(groups))
    lowest = 1.0
    for i, (metric, label) in enumerate(metrics.items()):
        rows = pd.concat([g[g.metric == metric] for _, g in groups])
        ax.bar(
            x + (i - (len(metrics) - 1) / 2) * width,
            rows["mean"],
            width,
            yerr=_errors(rows),
            capsize=2,
            label=label,
        )
        lowest = min(lowest, float(rows["low"].min()))
    ax.set_xticks(x, [name for name, _ in groups], fontsize=8, rotation=30, ha="right")
    if generation:
        ax.set_ylim(0.0, 1.0)
        ax.set_ylabel("toxicity of continuations (lower is better)")
        title = f"{task}: toxicity of sampled continuations by model ({_ci_note(sub)} over prompts)"
    else:
        ax.set_ylim(max(0.0, np.floor((lowest - 0.05) * 20) / 20), 1.0)
        ax.set_ylabel("test score (higher is better)")
        title = f"{task}: weak supervisor, W2S students and strong ceiling ({_ci_note(sub)})"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def pgr_figure(agg: pd.DataFrame, task: str, path: str, metric: str = "accuracy") -> None:
    """PGR of means per strategy with two-level CI whiskers; one bar colour per (weak, strong) pair; no bar
    where the gap is within noise (marked)."""
    sub = agg[(agg.task == task) & (agg.role == "pgr") & (agg.metric == metric)]
    pairs = sorted({(w, s) for w, s in zip(sub.weak_model, sub.strong_model)})
    strategies = list(dict.fromkeys(sub.sort_values("strategy")["strategy"]))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(strategies) * max(1, len(pairs)) + 2), 4.0))
    width = 0.8 / max(1, len(pairs))
    x = np.arange(len(strategies))
    for j, (weak, strong) in enumerate(pairs):
        rows = _readable(
            sub[(sub.weak_model == weak) & (sub.strong_model == strong)]
            .set_index("strategy")
            .reindex(strategies)
        )
        pos = x + (j - (len(pairs) - 1) / 2) * width
        ax.bar(
            pos,
            rows["mean"].fillna(0),
            width,
            yerr=_errors(rows.reset_index()),
            capsize=3,
            label=f"{weak} → {strong}",
        )
        for p, (_, r) in zip(pos, rows.iterrows()):
            if pd.isna(r["mean"]) and pd.notna(r["n_seeds"]):
                ax.annotate(
                    "gap within\nnoise",
                    (p, 0),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    color="0.3",
                )
    ax.axhline(0, color="black", lw=0.8)
    ax.axhline(1, color="0.5", lw=0.8, ls="--")
    ax.set_xticks(x, strategies)
    ax.set_xlabel("student strategy")
    ax.set_ylabel(f"PGR ({metric.replace('_', ' ')}); 1 = ceiling, 0 = weak")
    ax.set_title(f"{task}: performance gap recovered by strategy (95% CI)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def fluency_figure(agg: pd.DataFrame, task: str, path: str) -> None:
    """Expected max. toxicity against reference-LM perplexity, one point per model: a student that is
    less toxic only because it writes gibberish sits far to the right."""
    sub = agg[(agg.task == task) & agg.metric.isin(["expected_max_toxicity", "perplexity"])]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for label, g in model_groups(sub):
        tox, ppl = (g[g.metric == m].iloc[0] for m in ("expected_max_toxicity", "perplexity"))
        ax.errorbar(
            ppl["mean"],
            tox["mean"],
            xerr=_errors(ppl.to_frame().T),
            yerr=_errors(tox.to_frame().T),
            fmt="o",
            capsize=3,
            label=label.replace("\n", " "),
        )
    ax.set_xscale("log")
    ax.set_xlabel("perplexity of the continuations under the reference LM (log scale; lower = more fluent)")
    ax.set_ylabel("expected maximum toxicity (lower is better)")
    ax.set_ylim(0.0, 1.0)
    ax.set_title(f"{task}: toxicity vs fluency ({_ci_note(sub)})", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    _save(fig, path)


TRACK_METRICS = TRACK_PRIMARY


def tracks_figure(agg: pd.DataFrame, task: str, path: str) -> None:
    """Left: PGR of every student of a task, grouped by kind of weak supervision, each on its track's own
    metric (no bar where the gap is within noise). Right: expected max. toxicity of the untuned base, every
    student and each track's ceiling on the shared evaluation prompts."""
    sub = agg[agg.task == task]
    rows = pd.concat(
        [
            sub[(sub.track == track) & (sub.role == "pgr") & (sub.metric == metric)]
            for track, metric in TRACK_METRICS.items()
        ]
    ).reset_index(drop=True)
    rows = _readable(rows)
    colours = {track: f"C{i}" for i, track in enumerate(TRACK_METRICS)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(9.0, 1.6 * len(rows) + 5), 4.4))
    x = np.arange(len(rows))
    left.bar(
        x, rows["mean"].fillna(0), 0.7, yerr=_errors(rows), capsize=3, color=[colours[t] for t in rows.track]
    )
    for p, (_, r) in zip(x, rows.iterrows()):
        if pd.isna(r["mean"]):
            left.annotate(
                "gap within\nnoise",
                (p, 0),
                ha="center",
                va="bottom",
                fontsize=7,
                color="0.3",
            )
    left.axhline(0, color="black", lw=0.8)
    left.axhline(1, color="0.5", lw=0.8, ls="--")
    left.set_xticks(
        x, [f"{s}\n{w}" for s, w in zip(rows.strategy, rows.weak_model)], fontsize=7, rotation=30, ha="right"
    )
    left.set_ylabel("PGR on the track's own metric; 1 = ceiling, 0 = weak")
    left.legend(
        handles=[
            Patch(color=colours[t], label=f"weak {t}: {TRACK_METRICS[t].replace('_', ' ')}")
            for t in TRACK_METRICS
            if (rows.track == t).any()
        ],
        fontsize=7,
    )
    emt = sub[sub.metric == "expected_max_toxicity"]
    models = [("base (untuned)", "0.6", emt[emt.role == "base"].head(1))]
    for track in TRACK_METRICS:
        own = emt[emt.track == track]
        models += [
            (f"w2s {r.strategy}", colours[track], own[own.index == i])
            for i, r in own[own.role == "w2s"].iterrows()
        ]
        models += [(f"ceiling ({track})", colours[track], own[own.role == "ceiling"].head(1))]
    models = [m for m in models if len(m[2])]
    bars = pd.concat([m[2] for m in models])
    ppl = sub[sub.metric == "perplexity"].set_index(["weak_model", "strong_model", "strategy", "role"])[
        "mean"
    ]
    right.bar(
        np.arange(len(models)), bars["mean"], 0.7, yerr=_errors(bars), capsize=3, color=[m[1] for m in models]
    )
    labels = [
        f"{m[0]}\nperplexity {ppl.get(tuple(r[k] for k in ppl.index.names), np.nan):,.0f}"
        for m, (_, r) in zip(models, bars.iterrows())
    ]
    right.set_xticks(np.arange(len(models)), labels, fontsize=7, rotation=30, ha="right")
    right.set_ylabel("expected max. toxicity (lower is better)")
    right.set_ylim(0.0, 1.0)
    for ax in (left, right):
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{task}: kinds of weak supervision side by side ({_ci_note(rows)})", fontsize=10)
    _save(fig, path)


def ladder_figure(agg: pd.DataFrame, task: str, sizes: dict[str, int], path: str, metric: str) -> None:
    """PGR of means (left) and points recovered (right) against the strong model's parameters, one line per
    weak supervisor (naive students), 95 % two-level CIs; a PGR whose gap is within noise is left out (the
    right panel still shows its points recovered)."""
    sub = agg[(agg.task == task) & (agg.metric == metric) & (agg.strategy == LADDER_STRATEGY)]
    if "control" in sub:
        sub = sub[sub["control"].fillna("") == ""]  # weak supervisors only, not the controls
    sub = sub[sub.strong_model.isin(sizes)]
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.4))
    weaks = sorted(sub.weak_model.unique())
    for j, (weak, rows) in enumerate(sub.groupby("weak_model", sort=True)):
        dodge = 1.04 ** (j - (len(weaks) - 1) / 2)  # side by side at each size, whiskers apart
        for ax, role, scale in ((axes[0], "pgr", 1.0), (axes[1], "gain", 100.0)):
            r = rows[rows.role == role].assign(size=lambda d: d.strong_model.map(sizes)).sort_values("size")
            r = _readable(r) if role == "pgr" else r
            ax.errorbar(
                r["size"] * dodge,
                r["mean"] * scale,
                yerr=_errors(r) * scale,
                marker="o",
                capsize=3,
                label=f"weak: {weak}",
            )
    names = {size: name for name, size in sizes.items()}
    for ax, label in (
        (axes[0], "PGR of means; 1 = ceiling, 0 = weak"),
        (axes[1], "points recovered (w2s − weak)"),
    ):
        ax.set_xscale("log")
        ticks = sorted(names)
        ax.set_xticks(
            ticks, [f"{names[n]} ({n / 1e6:.1f}M)" for n in ticks], fontsize=7, rotation=30, ha="right"
        )
        ax.minorticks_off()
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xlabel("strong model (parameters)")
        ax.set_ylabel(f"{label} ({metric.replace('_', ' ')})", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].axhline(1, color="0.5", lw=0.8, ls="--")
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"{task}: weak-to-strong by strong-model size ({LADDER_STRATEGY} students, "
        f"{int(sub.n_seeds.max()) if len(sub) else 0} seed(s), 95% CI)",
        fontsize=10,
    )
    _save(fig, path)


def model_sizes(meta_files: dict[str, str]) -> dict[str, int]:
    """Strong model -> its parameter count, read from a ceiling checkpoint's metadata."""
    sizes = {}
    for model, meta_file in meta_files.items():
        meta = read_meta(meta_file)
        if "parameters" not in meta:
            raise PipelineError(
                f"{meta_file}: no `parameters` for the ladder figure (a model kind without parameters(), "
                "or a checkpoint written before the figure existed: delete it to retrain)"
            )
        sizes[model] = int(meta["parameters"])
    return sizes


def plot_all(
    summary_parquet: str, outputs: dict[str, dict[str, str]], ladder: dict[str, dict[str, str]] | None = None
) -> None:
    """outputs: task -> {"scores": png, "pgr": png, for generation tasks "fluency": png, for tasks with a
    preference track "tracks": png, and for classification tasks with several strong models "ladder": png
    (`ladder`: task -> strong model -> a ceiling's metadata file, for its size)}. A task's first three
    figures show its weak-label or weak-demonstration runs, or its preference runs when it has no others."""
    runs = read_parquet(summary_parquet, RUN_KEYS + ["seed", *LABELS, "role", "metric", "value"])
    for task, paths in outputs.items():
        own = runs[runs.task == task]
        every = across_seeds(own)  # per run key: the preference runs' rows are apart from the others
        mixed = (own.track != "preferences").any()
        agg = every[every.track != "preferences"].reset_index(drop=True) if mixed else every
        if "tracks" in paths:
            tracks_figure(every, task, paths["tracks"])
        scores_figure(agg, task, paths["scores"])
        pgr_figure(agg, task, paths["pgr"], primary_metric(agg, task))
        if "fluency" in paths:
            fluency_figure(agg, task, paths["fluency"])
        if "ladder" in paths:
            ladder_figure(agg, task, model_sizes(ladder[task]), paths["ladder"], primary_metric(agg, task))
        log.info("%s: wrote %s", task, ", ".join(paths.values()))
