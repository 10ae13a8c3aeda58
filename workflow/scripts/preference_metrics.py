"""Metrics of one preference run: preference accuracy with PGR, and the toxicity of base / student /
ceiling."""

import json

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.eval.preference import evaluate_preference_run

files = snakemake.input
evaluate_preference_run(
    files.gold_pairs,
    files.weak_judged,
    logps={"reference": files.reference_logps, "w2s": files.w2s_logps, "ceiling": files.ceiling_logps},
    generations={
        role: {kind: files[f"{role}_{kind}"] for kind in ("generations", "scores", "perplexity")}
        for role in ("base", "w2s", "ceiling")
    },
    beta=float(snakemake.params.beta),
    out=snakemake.output[0],
    identity=json.loads(snakemake.params.identity),
    n_boot=snakemake.params.n_boot,
    seed=int(snakemake.wildcards.seed),
)
