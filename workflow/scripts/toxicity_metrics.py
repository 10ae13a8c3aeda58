"""Toxicity, fluency and diversity of weak / base / W2S / ceiling continuations, with PGR."""

import json

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.eval.generation import ROLES, evaluate_toxicity_run

identity = json.loads(snakemake.params.identity)
evaluate_toxicity_run(
    generations={r: snakemake.input[f"{r}_generations"] for r in ROLES},
    scores={r: snakemake.input[f"{r}_scores"] for r in ROLES},
    perplexities={r: snakemake.input[f"{r}_perplexity"] for r in ROLES},
    scorer_heldout=snakemake.input.get("scorer_heldout"),
    out=snakemake.output[0],
    identity=identity,
    n_boot=snakemake.params.n_boot,
    seed=identity["seed"],
)
