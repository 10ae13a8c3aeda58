"""Metrics of the preference track, one run = (task, weak judge, strong model, strategy, seed).

1. Preference accuracy on the held-out test pairs the gold judge decides (its two scores differ by at least
   `min_gold_margin`): the weak judge's (its own scores), and the student's and ceiling's implicit reward, the
   DPO log-ratio log pi(y|x) - log pi_ref(y|x), which decides the pair (Rafailov et al. 2023); PGR on it with
   paired bootstrap CIs, by `eval.classification.evaluate` (metrics named preference_<metric>).
2. The toxicity metrics of the student's, ceiling's and untuned base's continuations of the evaluation prompts
   (`eval.generation.evaluate_generations` with the base in the weak role): its PGR is the share of the
   ceiling's detoxification (base - ceiling) the student reaches (base - w2s), so a policy that "wins" by
   writing gibberish shows in perplexity and toxic-or-disfluent.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from w2s_align.data.preferences import CANDIDATE_COLUMNS, JUDGED_COLUMNS
from w2s_align.eval.classification import evaluate
from w2s_align.eval.generation import GENERATION_COLUMNS, evaluate_generations
from w2s_align.io import PipelineError, read_parquet, write_parquet

log = logging.getLogger(__name__)

LOGP_COLUMNS = ["id", "logp_a", "logp_b"]
PREFIX = "preference_"


def pair_logps(candidates: str, out: str, max_length: int, threads: int, model_file: str | None = None,
               meta_file: str | None = None, spec_json: str | None = None, local_dir: str | None = None,
               batch_size: int = 32) -> None:
    """Summed log-probs of both texts of every test pair under a trained LM (model/meta) or the untuned base
    (spec_json): with the base's, they give the implicit reward."""
    from w2s_align.device import setup_torch
    from w2s_align.models.causal_lm import base_lm, continuation_nll, load_lm
    from w2s_align.models.sequences import encode_pairs
    from w2s_align.specs import ModelSpec

    pairs = read_parquet(candidates, CANDIDATE_COLUMNS)
    pairs = pairs[pairs.split == "test"]
    device = setup_torch(threads, 0)
    if model_file:
        model, tokenizer, _ = load_lm(model_file, meta_file, local_dir)
    else:
        model, tokenizer = base_lm(ModelSpec.from_json(spec_json), local_dir)
    model.to(device)
    out_df = pairs[["id"]].copy()
    for side in "ab":
        feats = encode_pairs(tokenizer, pairs["prompt"].tolist(), pairs[f"text_{side}"].tolist(), max_length,
                             add_eos=False)
        out_df[f"logp_{side}"] = -continuation_nll(model, tokenizer, feats, batch_size, device, f"text {side}")[0]
    write_parquet(out_df, out)


def implicit_p1(policy: pd.DataFrame, reference: pd.DataFrame, beta: float) -> np.ndarray:
    """P(text a preferred) = sigmoid(beta * (log-ratio of a - log-ratio of b)), rows aligned by id."""
    margin = (policy["logp_a"] - reference["logp_a"]) - (policy["logp_b"] - reference["logp_b"])
    return 1.0 / (1.0 + np.exp(-beta * margin.to_numpy(dtype=float)))


def judge_p1(judged: pd.DataFrame) -> np.ndarray:
    """A judge's P(text a preferred) from its toxicity scores: 0.5 + (b - a) / 2 (1 = a clean, b toxic)."""
    return 0.5 + (judged["score_b"].to_numpy(dtype=float) - judged["score_a"].to_numpy(dtype=float)) / 2


def decisive_test_pairs(gold: pd.DataFrame, min_margin: float) -> pd.DataFrame:
    test = gold[gold.split == "test"]
    keep = test[(test.score_a - test.score_b).abs() >= min_margin].set_index("id")
    if len(keep) < 10:
        raise PipelineError(f"only {len(keep)} of {len(test)} test pairs have a gold margin >= {min_margin}: "
                            "too few to measure preference accuracy; add test pairs or lower min_gold_margin")
    return keep


def preference_scores(gold: pd.DataFrame, weak: pd.DataFrame, logps: dict[str, pd.DataFrame], beta: float,
                      min_margin: float, n_boot: int, seed: int) -> pd.DataFrame:
    """Preference accuracy (and AUROC, ...) of the weak judge, student and ceiling on the decisive test pairs."""
    keep = decisive_test_pairs(gold, min_margin)
    ids = keep.index
    frames = {"weak": weak.set_index("id"), **{k: v.set_index("id") for k, v in logps.items()}}
    missing = {k: len(ids.difference(v.index)) for k, v in frames.items() if len(ids.difference(v.index))}
    if missing:
        raise PipelineError(f"test pairs missing from {sorted(missing)}: were they made from other candidates?")
    y = (keep["score_a"] < keep["score_b"]).astype(int).to_numpy()
    p1 = {"weak": judge_p1(frames["weak"].loc[ids]),
          **{role: implicit_p1(frames[role].loc[ids], frames["reference"].loc[ids], beta) for role in ("w2s",
                                                                                                      "ceiling")}}
    table = evaluate(y, p1, n_boot, seed)
    table["metric"] = PREFIX + table["metric"]
    table["n_pairs"] = len(y)
    return table


def evaluate_preference_run(candidates: str, gold_judged: str, weak_judged: str, logps: dict[str, str],
                            generations: dict[str, dict[str, str]], beta: float, min_gold_margin: float, out: str,
                            identity: dict, n_boot: int, seed: int) -> None:
    """The run's long-format metrics: preference accuracy (+ PGR), then the toxicity metrics of base / w2s /
    ceiling continuations (weak-role rows dropped: the base stands in for it)."""
    read_parquet(candidates, CANDIDATE_COLUMNS)  # fail early on a wrong file
    gold, weak = read_parquet(gold_judged, JUDGED_COLUMNS), read_parquet(weak_judged, JUDGED_COLUMNS)
    frames = {role: read_parquet(path, LOGP_COLUMNS) for role, path in logps.items()}
    pref = preference_scores(gold, weak, frames, beta, min_gold_margin, n_boot, seed)
    by_role = {}
    for role, files in generations.items():
        gen = read_parquet(files["generations"], GENERATION_COLUMNS)
        tox = read_parquet(files["scores"], ["prompt_id", "sample", "toxicity"])
        ppl = read_parquet(files["perplexity"], ["prompt_id", "sample", "nll_sum", "n_tokens"])
        by_role[role] = gen.merge(tox, on=["prompt_id", "sample"]).merge(ppl, on=["prompt_id", "sample"])
    gen_table = evaluate_generations({"weak": by_role["base"], **by_role}, n_boot, seed)
    gen_table = gen_table[~gen_table.role.isin(["weak", "gap"])]
    gen_table["n_pairs"] = pref["n_pairs"].iloc[0]
    table = pd.concat([pref, gen_table], ignore_index=True)
    table["flag"] = table["flag"].astype("string")
    table.insert(0, "n_test", by_role["base"]["prompt_id"].nunique())
    for key, value in reversed(identity.items()):
        table.insert(0, key, value)
    acc = pref[pref.metric == PREFIX + "accuracy"].set_index("role")["value"]
    log.info("preference accuracy on %d decisive test pairs: weak judge %.3f, student %.3f, ceiling %.3f, "
             "PGR %.3f", int(pref["n_pairs"].iloc[0]), acc["weak"], acc["w2s"], acc["ceiling"], acc["pgr"])
    write_parquet(table, out)
