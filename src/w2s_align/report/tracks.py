"""Summary sections of the preference track, and the kinds of weak supervision side by side.

A run's track is a column of its metric table (settings/paths.run_identity): a preference run's toxicity rows
compare the DPO student and ceiling with the untuned base, not with a weak LM.
"""

from __future__ import annotations

import pandas as pd

from w2s_align.report.aggregate import (
    RUN_KEYS,
    TRACK_PRIMARY,
    TRACKS,
    fmt,
    metric_value,
    pgr_text,
    run_pgr_text,
)


def _cell(r: pd.DataFrame, role: str, metric: str) -> str:
    return fmt(
        metric_value(r, role, metric),
        metric_value(r, role, metric, "ci_low"),
        metric_value(r, role, metric, "ci_high"),
    )


def preference_markdown(runs: pd.DataFrame) -> list[str]:
    """Per preference run: preference accuracy of weak judge / student / ceiling on the gold-decided test
    pairs with PGR and its noise floor, then expected max. toxicity and perplexity of base / student /
    ceiling."""
    lines = [
        "## Preference track (DPO): per run (95% bootstrap CI over test pairs / evaluation prompts)",
        "",
        "Preference accuracy: the weak judge by its own scores, student and ceiling by their implicit reward "
        "(DPO log-ratio against the untuned base), on held-out pairs the gold judge decides. "
        "EMT recovered = (base − w2s) / (base − ceiling) on expected max. toxicity.",
        "",
        "| task | weak judge | strong | strategy | seed | pairs | weak judge | w2s | ceiling | PGR [95% CI] "
        "| min. detectable PGR | EMT base | EMT w2s | EMT ceiling | EMT recovered | perplexity base / w2s / "
        "ceiling | toxic or disfluent w2s |",
        "|" + "---|" * 17,
    ]
    for key, r in runs.groupby(RUN_KEYS + ["seed"], sort=True):
        metric, emt = TRACK_PRIMARY["preferences"], "expected_max_toxicity"
        ppl = " / ".join(fmt(metric_value(r, role, "perplexity")) for role in ("base", "w2s", "ceiling"))
        pairs = r.loc[r.metric == metric, "n_pairs"] if "n_pairs" in r else pd.Series(dtype=float)
        cells = [
            *map(str, key),
            str(int(pairs.iloc[0])) if len(pairs) else "n/a",
            *(_cell(r, role, metric) for role in ("weak", "w2s", "ceiling")),
            run_pgr_text(r, metric),
            fmt(metric_value(r, "min_detectable_pgr", metric)),
            *(_cell(r, role, emt) for role in ("base", "w2s", "ceiling")),
            run_pgr_text(r, emt, "tuned"),
            ppl,
            _cell(r, "w2s", "toxic_or_disfluent"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _mean(r: pd.DataFrame, role: str, metric: str) -> str:
    row = r[(r.role == role) & (r.metric == metric)]
    if row.empty or pd.isna(row["mean"].iloc[0]):
        return "n/a"
    x = row.iloc[0]
    return (
        f"{x['mean']:.3f}"
        + ("" if pd.isna(x["ci_half"]) else f" ± {x['ci_half']:.3f}")
        + (f" [{x['low']:.3f}, {x['high']:.3f}]" if pd.isna(x["ci_half"]) and pd.notna(x["low"]) else "")
    )


def tracks_markdown(agg: pd.DataFrame, task: str) -> list[str]:
    """One task, the kinds of weak supervision it ran side by side (mean across seeds; one seed: its bootstrap
    CI): PGR on each track's own metric, and the student's toxicity and fluency on the shared evaluation
    prompts."""
    sub = agg[agg.task == task]
    lines = [
        f"## {task}: weak labels, weak demonstrations and weak preferences side by side",
        "",
        "Each track's PGR is on its own metric (labels: accuracy; demonstrations: expected max. toxicity, "
        "weak LM → ceiling; preferences: preference accuracy, weak judge → ceiling). The student's EMT and "
        "perplexity are on the same evaluation prompts for both generation tracks.",
        "",
        "| supervision | weak supervisor → strong | strategy | seeds | PGR metric | weak | w2s | ceiling "
        "| PGR | w2s EMT | w2s perplexity | ceiling EMT |",
        "|" + "---|" * 12,
    ]
    for track, label in TRACKS.items():
        rows = sub[sub.track == track]
        if rows.empty:
            lines.append(f"| {label} | — not run for this task | | | | | | | | | | |")
            continue
        metric = TRACK_PRIMARY[track]
        for key, r in rows.groupby(["weak_model", "strong_model", "strategy"], sort=True):
            pgr = pgr_text(r[r.metric == metric].set_index("role"), digits=3)
            lines.append(
                "| "
                + " | ".join(
                    [
                        label,
                        f"{key[0]} → {key[1]}",
                        key[2],
                        str(int(r.loc[r.metric == metric, "n_seeds"].max())),
                        metric,
                        *(_mean(r, role, metric) for role in ("weak", "w2s", "ceiling")),
                        pgr,
                        _mean(r, "w2s", "expected_max_toxicity"),
                        _mean(r, "w2s", "perplexity"),
                        _mean(r, "ceiling", "expected_max_toxicity"),
                    ]
                )
                + " |"
            )
    return lines + [""]


def track_sections(runs: pd.DataFrame, agg: pd.DataFrame) -> list[str]:
    """The preference track's per-run table and, per task with it, the tracks side by side (nothing without
    preference runs); `agg` is `across_seeds(runs)`."""

    preference = runs[runs.track == "preferences"]
    if preference.empty:
        return []
    out = preference_markdown(preference)
    for task in sorted(preference["task"].unique()):
        out += tracks_markdown(agg, task)
    return out
