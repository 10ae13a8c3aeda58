"""DPO of the strong model on one judge's preferences: a student (weak judge) or the ceiling (gold judge)."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.train.dpo import train_dpo

train_dpo(
    snakemake.input.candidates,
    snakemake.input.judged,
    beta=float(snakemake.params.beta),
    strategy_json=snakemake.params.strategy,
    spec_json=snakemake.params.spec,
    hparams_json=snakemake.params.hparams,
    max_length=snakemake.params.max_length,
    seed=int(snakemake.wildcards.seed),
    threads=snakemake.threads,
    model_out=snakemake.output.model,
    meta_out=snakemake.output.meta,
    local_dir=snakemake.params.local_dir,
)
