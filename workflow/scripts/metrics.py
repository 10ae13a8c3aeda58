"""Test metrics of weak, student and ceiling for one run, with PGR and bootstrap CIs."""

import json

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.eval.classification import evaluate_run

identity = json.loads(snakemake.params.identity)
evaluate_run(
    snakemake.input.weak_labels,
    snakemake.input.student,
    snakemake.input.ceiling,
    snakemake.output[0],
    identity,
    n_boot=snakemake.params.n_boot,
    seed=identity["seed"],
)
