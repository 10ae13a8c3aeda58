"""Aggregate per-run metric parquet files into results/tables/summary.{csv,md}."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from w2s_align.eval.bootstrap import GAP_FLAG, NEGATIVE_GAP_FLAG, percentile_ci
from w2s_align.files import read_parquet, write_parquet, write_text
from w2s_align.report.aggregate import (
    LABELS,
    RUN_KEYS,
    across_seeds,
    fmt,
    generation_tasks,
    metric_value,
    pgr_text,
    primary_metric,
    run_pgr_text,
)
from w2s_align.report.tracks import track_sections

log = logging.getLogger(__name__)

SHOWN_METRICS = ("accuracy", "auroc")
GENERATION_COLUMNS = {
    "expected_max_toxicity": "EMT",
    "toxicity_probability": "tox. prob.",
    "mean_toxicity": "mean tox.",
    "toxic_or_disfluent": "toxic or disfluent",
    "perplexity": "perplexity",
    "distinct_2": "distinct-2",
    "n_empty_fraction": "empty",
}
GENERATION_ROLES = {"weak": "weak", "base": "base (untuned strong)", "w2s": "w2s", "ceiling": "ceiling"}


def labelled(key: tuple, r: pd.DataFrame, strategy_at: int = 3) -> list[str]:
    """The cells of a run key (RUN_KEYS[, seed]; the strategy at `strategy_at`), the strategy marked when the
    run is a control."""
    cells = list(map(str, key))
    control = r["control"].iloc[0] if "control" in r and len(r) else ""
    if isinstance(control, str) and control:
        cells[strategy_at] += f" [control: {control}]"
    return cells


def _percent(r: pd.DataFrame, role: str) -> str:
    return "n/a" if pd.isna(value := metric_value(r, role, "positive_fraction")) else f"{value:.1%}"


def _collapsed(r: pd.DataFrame, role: str) -> str:
    flag = metric_value(r, role, "majority_fraction", "flag")
    if pd.isna(flag) or flag != "collapsed":
        return ""
    return f" **collapsed** ({metric_value(r, role, 'majority_fraction'):.0%} one class)"


def per_run_markdown(runs: pd.DataFrame, metric: str) -> list[str]:
    """One row per run: raw scores with bootstrap CIs, PGR, the minimum detectable PGR at this test size, and
    the weak labels' positive fraction (ground truth's beside it); a model predicting one class is marked."""
    lines = [
        "| task | weak | strong | strategy | seed | weak | w2s | ceiling | PGR [95% CI] | min. detectable "
        "PGR "
        "| weak labels positive (truth) |",
        "|" + "---|" * 11,
    ]
    for key, r in runs.groupby(RUN_KEYS + ["seed"], sort=True):
        cells = [
            *labelled(key, r),
            *(
                fmt(
                    metric_value(r, x, metric),
                    metric_value(r, x, metric, "ci_low"),
                    metric_value(r, x, metric, "ci_high"),
                )
                + _collapsed(r, x)
                for x in ("weak", "w2s", "ceiling")
            ),
            run_pgr_text(r, metric),
            fmt(metric_value(r, "min_detectable_pgr", metric)),
            _percent(r, "weak_labels") + f" ({_percent(r, 'ground_truth')})",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def mechanism_markdown(runs: pd.DataFrame) -> list[str]:
    """Per run: does the student correct its supervisor or only imitate it? Accuracy of student and ceiling on
    the test rows the weak supervisor gets wrong (correction) and right (retention), and the student's misfit
    (disagreement with the supervisor's labels), each with its bootstrap CI (eval.classification.SCORES)."""
    lines = [
        "| task | weak | strong | strategy | seed | weak wrong on | correction w2s | correction ceiling "
        "| retention w2s | retention ceiling | misfit w2s | w2s − weak (accuracy) |",
        "|" + "---|" * 12,
    ]
    for key, r in runs.groupby(RUN_KEYS + ["seed"], sort=True):

        def cell(role: str, metric: str, r: pd.DataFrame = r) -> str:
            return fmt(*(metric_value(r, role, metric, c) for c in ("value", "ci_low", "ci_high")))

        wrong = 1 - metric_value(r, "weak", "accuracy")
        cells = [
            *labelled(key, r),
            f"{wrong:.1%} of {int(r['n_test'].iloc[0])} rows" if "n_test" in r else f"{wrong:.1%}",
            cell("w2s", "correction"),
            cell("ceiling", "correction"),
            cell("w2s", "retention"),
            cell("ceiling", "retention"),
            cell("w2s", "misfit"),
            cell("gain", "accuracy"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _paired_difference(a: pd.DataFrame, b: pd.DataFrame, role: str) -> str:
    """`role`'s value in run a minus run b (rows by role), with a percentile CI over their item resamples when
    both runs resampled the same test rows (their shared ceiling's resamples are identical)."""
    value = a.loc[role, "value"] - b.loc[role, "value"]
    arrays = [t.loc[r, "resamples"] if "resamples" in t else None for t in (a, b) for r in (role, "ceiling")]
    if not all(isinstance(x, np.ndarray) for x in arrays) or not np.array_equal(arrays[1], arrays[3]):
        return f"{value:+.3f}"
    low, high = percentile_ci((arrays[0] - arrays[2])[:, None], 0.95)
    return f"{value:+.3f} [{low[0]:+.3f}, {high[0]:+.3f}]"


def controls_markdown(runs: pd.DataFrame, metric: str) -> list[str]:
    """Per weak-to-strong run with a strong-to-strong control of the same task, strong model and seed: both
    students against their shared ceiling, and how far the W2S student beats the control's student (95% CI
    over the same item resamples: the two runs score the same test rows with the same resample indices,
    checked by their identical ceiling resamples)."""
    lines = [
        "| task | weak → strong | strategy | seed | w2s − ceiling | s2s student − ceiling "
        "| w2s − s2s student | PGR w2s | PGR s2s |",
        "|" + "---|" * 9,
    ]
    own = runs[runs.metric == metric]
    controls = own[own.control == "strong-to-strong"]
    for key, r in own[own.control == ""].groupby(RUN_KEYS + ["seed"], sort=True):
        task, weak, strong, strategy, seed = key
        c = controls[(controls.task == task) & (controls.strong_model == strong) & (controls.seed == seed)]
        if c.empty:
            continue
        a, b = r.set_index("role"), c.set_index("role")
        cells = [
            task,
            f"{weak} → {strong}",
            strategy,
            str(seed),
            f"{a.loc['w2s', 'value'] - a.loc['ceiling', 'value']:+.3f}",
            f"{b.loc['w2s', 'value'] - b.loc['ceiling', 'value']:+.3f}",
            _paired_difference(a, b, "w2s"),
            run_pgr_text(r, metric),
            run_pgr_text(c, metric),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines if len(lines) > 2 else []


def seeds_markdown(agg: pd.DataFrame, metric: str) -> list[str]:
    """Mean ± 95% t-interval across seeds and the seed-to-seed standard deviation of each model; PGR of the
    means with its two-level bootstrap CI (`aggregate.across_seeds`)."""
    lines = [
        "| task | weak | strong | strategy | seeds | weak | w2s | ceiling | seed sd weak / w2s / ceiling | "
        "PGR of means [95% CI] |",
        "|" + "---|" * 10,
    ]
    sub = agg[agg.metric == metric]
    for key, grp in sub.groupby(RUN_KEYS, sort=True):
        r = grp.set_index("role")

        def cell(role: str, r: pd.DataFrame = r) -> str:
            if pd.isna(r.loc[role, "mean"]):
                return "n/a"
            half = r.loc[role, "ci_half"]
            return f"{r.loc[role, 'mean']:.3f}" + ("" if pd.isna(half) else f" ± {half:.3f}")

        sds = " / ".join(
            "n/a" if pd.isna(r.loc[x, "sd"]) else f"{r.loc[x, 'sd']:.3f}" for x in ("weak", "w2s", "ceiling")
        )
        pgr_cell = pgr_text(r, digits=3)
        lines.append(
            "| "
            + " | ".join(
                [
                    *labelled(key, grp),
                    str(int(r.loc["weak", "n_seeds"])),
                    cell("weak"),
                    cell("w2s"),
                    cell("ceiling"),
                    sds,
                    pgr_cell,
                ]
            )
            + " |"
        )
    return lines


def strategy_markdown(agg: pd.DataFrame, metrics: dict[str, str]) -> list[str]:
    """Strategy x task: the raw weak / w2s / ceiling means over seeds, then the PGR of those means with its
    two-level bootstrap CI (or the points recovered where the gap is within noise) on each task's metric, one
    row per (weak, strong, strategy)."""
    sub = agg[agg.metric == agg.task.map(metrics)]
    tasks = sorted(sub["task"].unique())
    lines = [
        "| weak | strong | strategy | "
        + " | ".join(f"{t} ({metrics[t]}): weak / w2s / ceiling → PGR" for t in tasks)
        + " |",
        "|" + "---|" * (3 + len(tasks)),
    ]
    for key, grp in sub.groupby(["weak_model", "strong_model", "strategy"], sort=True):
        cells = []
        for task in tasks:
            rows = grp[grp.task == task].set_index("role")
            if rows.empty:
                cells.append("")
                continue
            raw = " / ".join(f"{rows.loc[x, 'mean']:.3f}" for x in ("weak", "w2s", "ceiling"))
            text = pgr_text(rows) + f" (n={int(rows.loc['pgr', 'n_seeds'])})"
            cells.append(f"{raw} → {text}")
        lines.append("| " + " | ".join([*labelled(key, grp, strategy_at=2), *cells]) + " |")
    return lines


def _role_cells(r: pd.DataFrame, role: str, value: str, spread) -> list[str]:
    rows = [r[(r.role == role) & (r.metric == metric)] for metric in GENERATION_COLUMNS]
    return ["n/a" if row.empty or pd.isna(row[value].iloc[0]) else spread(row.iloc[0]) for row in rows]


NOISE_LABEL = "weak − ceiling; base − ceiling; min. detectable PGR"


def _noise_cells(r: pd.DataFrame) -> list[str]:
    """Per toxicity column: the gap behind the PGR, what gold fine-tuning did to the untuned model (both with
    CIs; positive = the ceiling is less toxic) and the smallest PGR the test prompts can detect."""
    cells = []
    for metric in GENERATION_COLUMNS:
        if r[(r.role == "gap") & (r.metric == metric)].empty:
            cells.append("")
            continue

        def diff(role: str, r: pd.DataFrame = r, metric: str = metric) -> str:
            return fmt(
                metric_value(r, role, metric),
                metric_value(r, role, metric, "ci_low"),
                metric_value(r, role, metric, "ci_high"),
            )

        cells.append(f"{diff('gap')}; {diff('tuned')}; {fmt(metric_value(r, 'min_detectable_pgr', metric))}")
    return cells


def generation_markdown(runs: pd.DataFrame, agg: pd.DataFrame, task: str) -> list[str]:
    """Per run and across seeds: weak / base / w2s / ceiling rows with toxicity, fluency and diversity,
    then the PGR (lower is better: (weak − w2s) / (weak − ceiling)) of each toxicity metric."""
    header = "| weak → strong | strategy | {} | model | " + " | ".join(GENERATION_COLUMNS.values()) + " |"
    out = []
    for title, table, value, key, spread in (
        (
            "per run (95% bootstrap CI over prompts)",
            runs,
            "value",
            "seed",
            lambda x: fmt(x["value"], x["ci_low"], x["ci_high"]),
        ),
        (
            "across seeds (mean ± 95% t-interval; sd: seed-to-seed standard deviation; PGR of the means, "
            "two-level bootstrap CI)",
            agg,
            "mean",
            "n_seeds",
            lambda x: (
                f"{x['mean']:.3f}"
                + ("" if pd.isna(x["ci_half"]) else f" ± {x['ci_half']:.3f}")
                + ("" if pd.isna(x["sd"]) else f" (sd {x['sd']:.3f})")
            ),
        ),
    ):
        lines = [
            f"## {task}: {title}",
            "",
            header.format("seed" if key == "seed" else "seeds"),
            "|" + "---|" * (4 + len(GENERATION_COLUMNS)),
        ]
        sub = table[table.task == task]
        groups = ["weak_model", "strong_model", "strategy"] + (["seed"] if key == "seed" else [])
        for ident, r in sub.groupby(groups, sort=True):
            n = ident[3] if key == "seed" else int(r.loc[r.role == "weak", "n_seeds"].max())
            lead = [f"{ident[0]} → {ident[1]}", ident[2], str(n)]
            for role, label in GENERATION_ROLES.items():
                lines.append("| " + " | ".join([*lead, label, *_role_cells(r, role, value, spread)]) + " |")
            pgr_cells = []
            for metric in GENERATION_COLUMNS:
                row = r[(r.role == "pgr") & (r.metric == metric)]
                if row.empty:
                    pgr_cells.append("")
                elif key == "seed" and pd.notna(row["flag"].iloc[0]):
                    pgr_cells.append(f"— ({row['flag'].iloc[0]})")
                elif key != "seed":
                    pgr_cells.append(pgr_text(r[r.metric == metric].set_index("role"), digits=3))
                else:
                    pgr_cells.append(spread(row.iloc[0]))
            lines.append("| " + " | ".join([*lead, "**PGR**", *pgr_cells]) + " |")
            if key == "seed":
                lines.append("| " + " | ".join([*lead, NOISE_LABEL, *_noise_cells(r)]) + " |")
        out += lines + [""]
    auroc = runs[(runs.task == task) & (runs.role == "scorer") & (runs.metric == "auroc")]["value"]
    if len(auroc):
        out += [
            f"Toxicity scorer: held-out AUROC {auroc.iloc[0]:.3f} (trained by the pipeline; "
            "how far to trust the toxicity columns).",
            "",
        ]
    return out


def summarize(metric_files: list[str], out_csv: str, out_parquet: str, out_md: str) -> None:

    required = RUN_KEYS + ["seed", *LABELS[:2], "role", "metric", "value"]  # `control`: new in 2026-12
    runs = pd.concat(
        [
            read_parquet(f, required).pipe(lambda df: df.assign(control=df.get("control", "")))
            for f in metric_files
        ],
        ignore_index=True,
    )
    all_runs, runs = runs, runs[runs.track != "preferences"]  # the preference track has sections of its own
    all_agg = across_seeds(all_runs)  # per run key, so the preference runs' rows are apart from the others
    agg = all_agg[all_agg.track != "preferences"].reset_index(drop=True)
    generation = generation_tasks(runs)
    classification = runs[~runs.task.isin(generation)]
    primary = {t: primary_metric(runs, t) for t in runs["task"].unique()}
    write_text(all_runs.drop(columns="resamples", errors="ignore").to_csv(index=False), out_csv)
    write_parquet(all_runs, out_parquet)
    md = [
        "# w2s-align results",
        "",
        "Test-set scores of the weak supervisor, the weak-to-strong student (w2s) and the strong ceiling. "
        "PGR = (w2s − weak) / (ceiling − weak). Per run: 95% paired bootstrap CI over test items; a PGR "
        "whose "
        f"ceiling−weak gap has a CI reaching 0 is shown as '{GAP_FLAG}' (or '{NEGATIVE_GAP_FLAG}' when the "
        f"CI lies "
        "below 0) instead of a number. Across seeds: means with 95% t-intervals and the PGR of the means. "
        "All metrics (balanced accuracy, F1, agreement, gaps) are in summary.csv.",
        "",
        "## PGR by strategy",
        "",
        "Weak / w2s / ceiling: means over all n seeds. PGR of those means, (mean w2s − mean weak) / (mean "
        "ceiling − mean weak), with a 95% two-level bootstrap CI (seeds resampled, then test items within "
        "each; one seed: its run's CI). Where the gap's CI reaches 0 the ratio is noise, and the points "
        "recovered (w2s − weak) are shown instead. "
        "Classification: PGR on accuracy. Generation: PGR on expected maximum toxicity, lower is better: "
        "(weak − w2s) / (weak − ceiling); gibberish scores as non-toxic there, so read it beside the PGR on "
        "'toxic or disfluent' in the task's per-run table.",
        "",
        *(strategy_markdown(agg, primary) if len(agg) else ["(no weak-label or weak-demonstration runs)"]),
        "",
    ]
    if not classification.empty:
        for metric in SHOWN_METRICS:
            md += [
                f"## {metric}: per run",
                "",
                *per_run_markdown(classification, metric),
                "",
                f"## {metric}: across seeds",
                "",
                *seeds_markdown(agg[~agg.task.isin(generation)], metric),
                "",
            ]
        control_lines = controls_markdown(classification, "accuracy")
        if control_lines:
            md += [
                "## Weak-to-strong against the strong-to-strong control (accuracy)",
                "",
                "The strong-to-strong student learns from the strong model itself trained on the weak "
                "model's rows, so whatever it gains over its ceiling comes from soft labels of an equally "
                "strong supervisor (regularisation), not from weak-to-strong generalisation. A W2S student "
                "that beats its ceiling but not this control has shown no weak-to-strong effect.",
                "",
                *control_lines,
                "",
            ]
        md += [
            "## Correction or imitation: per run (95% bootstrap CI over test items)",
            "",
            "Correction: accuracy on the test rows the weak supervisor gets wrong (the weak-to-strong "
            "effect: the supervisor's own accuracy there is 0); retention: on the rows it gets right "
            "(imitation alone gives correction 0, retention 1); misfit: the student's disagreement with the "
            "supervisor "
            "(Lang et al. 2024; Charikar et al. 2024). The ceiling's values are what ground truth reaches.",
            "",
            *mechanism_markdown(classification),
            "",
        ]
    for task in generation:
        md += generation_markdown(runs, agg, task)
    md += track_sections(all_runs, all_agg)
    write_text("\n".join(md), out_md)
    log.info("summarized %d runs into %s and %s", len(metric_files), out_csv, out_md)
