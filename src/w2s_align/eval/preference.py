"""Metrics of the preference track, one run = (task, weak judge, strong model, strategy, seed).

1. Preference accuracy on the gold judge's pairs of the held-out test prompts (its least against its most
toxic candidate, where the two differ by at least `min_gold_margin`; each shown in a fixed random order): the
weak judge's (its own scores of the two texts), and the student's and ceiling's implicit reward, the DPO
log-ratio log pi(y|x) - log pi_ref(y|x), which decides the pair (Rafailov et al. 2023); PGR on it with paired
bootstrap CIs, by `eval.classification.evaluate` (metrics named preference_<metric>).
2. The toxicity metrics of the student's, ceiling's and untuned base's continuations of the evaluation prompts
   (`eval.generation.evaluate_generations` with the base as the reference role): its PGR is the share of the
   ceiling's detoxification (base - ceiling) the student reaches (base - w2s), so a policy that "wins" by
   writing gibberish shows in perplexity and toxic-or-disfluent.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from w2s_align.data.preferences import GOLD_PAIR_COLUMNS, JUDGED_COLUMNS
from w2s_align.errors import PipelineError
from w2s_align.eval.classification import evaluate
from w2s_align.eval.generation import evaluate_generations, scored_generations
from w2s_align.files import read_parquet, write_parquet
from w2s_align.infer.pair_logps import LOGP_COLUMNS

log = logging.getLogger(__name__)

PREFIX = "preference_"


def per_side(
    pairs: pd.DataFrame, values: pd.DataFrame, column: str, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """`column` of texts a and b of every pair, from a long frame keyed by (id, sample)."""
    table = values.set_index(["id", "sample"])[column]
    out = []
    for side in "ab":
        keys = pd.MultiIndex.from_arrays([pairs["id"], pairs[f"sample_{side}"]])
        missing = keys.difference(table.index)
        if len(missing):
            raise PipelineError(
                f"{what} lacks {len(missing)} test candidates; was it made from other candidates?"
            )
        out.append(table.loc[keys].to_numpy(dtype=float))
    return out[0], out[1]


def implicit_p1(
    policy: tuple[np.ndarray, np.ndarray], reference: tuple[np.ndarray, np.ndarray], beta: float
) -> np.ndarray:
    """P(text a preferred) = sigmoid(beta * (log-ratio of a - log-ratio of b))."""
    margin = (policy[0] - reference[0]) - (policy[1] - reference[1])
    return 1.0 / (1.0 + np.exp(-beta * margin))


def judge_p1(score_a: np.ndarray, score_b: np.ndarray) -> np.ndarray:
    """A judge's P(text a preferred) from its toxicity scores: 0.5 + (b - a) / 2 (1 = a clean, b toxic)."""
    return 0.5 + (np.asarray(score_b, dtype=float) - np.asarray(score_a, dtype=float)) / 2


def preference_scores(
    pairs: pd.DataFrame,
    weak: pd.DataFrame,
    logps: dict[str, pd.DataFrame],
    beta: float,
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    """Preference accuracy (and AUROC, ...) of the weak judge, student and ceiling on the gold test pairs."""
    sides = {role: per_side(pairs, frame, "logp", f"{role} log-probs") for role, frame in logps.items()}
    p1 = {
        "weak": judge_p1(*per_side(pairs, weak, "score", "the weak judge's scores")),
        **{role: implicit_p1(sides[role], sides["reference"], beta) for role in ("w2s", "ceiling")},
    }
    table = evaluate(pairs["y"].to_numpy(), p1, n_boot, seed)
    table["metric"] = PREFIX + table["metric"]
    table["n_pairs"] = len(pairs)
    return table


def evaluate_preference_run(
    gold_pairs: str,
    weak_judged: str,
    logps: dict[str, str],
    generations: dict[str, dict[str, str]],
    beta: float,
    out: str,
    identity: dict,
    n_boot: int,
    seed: int,
) -> None:
    """The run's long-format metrics: preference accuracy (+ PGR), then the toxicity metrics of base / w2s /
    ceiling continuations (PGR from the base)."""
    pairs = read_parquet(gold_pairs, GOLD_PAIR_COLUMNS)
    frames = {role: read_parquet(path, LOGP_COLUMNS) for role, path in logps.items()}
    pref = preference_scores(pairs, read_parquet(weak_judged, JUDGED_COLUMNS), frames, beta, n_boot, seed)
    by_role = {
        role: scored_generations(f["generations"], f["scores"], f["perplexity"])
        for role, f in generations.items()
    }
    gen_table = evaluate_generations(by_role, n_boot, seed, reference="base")
    gen_table["n_pairs"] = pref["n_pairs"].iloc[0]
    table = pd.concat([pref, gen_table], ignore_index=True)
    table["flag"] = table["flag"].astype("string")
    table.insert(0, "n_test", by_role["base"]["prompt_id"].nunique())
    for key, value in reversed(identity.items()):
        table.insert(0, key, value)
    acc = pref[pref.metric == PREFIX + "accuracy"].set_index("role")["value"]
    log.info(
        "preference accuracy on %d decisive test pairs: weak judge %.3f, student %.3f, ceiling %.3f, "
        "PGR %.3f",
        int(pref["n_pairs"].iloc[0]),
        acc["weak"],
        acc["w2s"],
        acc["ceiling"],
        acc["pgr"],
    )
    write_parquet(table, out)
