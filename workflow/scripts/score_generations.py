"""Toxicity of each continuation by the task's scorer (secrets come only from the environment)."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.scoring.score import score_generations

score_generations(
    snakemake.input.generations,
    snakemake.params.scorer,
    snakemake.output[0],
    cache_dir=snakemake.params.cache,
    threads=snakemake.threads,
    model_file=snakemake.input.get("model"),
    meta_file=snakemake.input.get("meta"),
)
