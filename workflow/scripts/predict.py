"""Predictions of a trained strong classifier (ceiling or student) on val and test."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.infer.predict import write_predictions

write_predictions(
    snakemake.input.model,
    snakemake.input.meta,
    {"val": snakemake.input.val, "test": snakemake.input.test},
    snakemake.output[0],
    model_name=snakemake.params.model_name,
    threads=snakemake.threads,
    local_dir=snakemake.params.local_dir,
)
