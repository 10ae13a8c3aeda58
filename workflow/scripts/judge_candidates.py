"""One judge's toxicity scores of both texts of every candidate pair."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.scoring.judge import judge_candidates

judge_candidates(
    snakemake.input.candidates,
    snakemake.params.judge,
    snakemake.output[0],
    threads=snakemake.threads,
    cache_dir=snakemake.params.cache,
    model_file=snakemake.input.get("judge_model"),
    meta_file=snakemake.input.get("judge_meta"),
)
