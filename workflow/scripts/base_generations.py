"""Continuations of the untuned strong model."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.infer.generate import base_generations

base_generations(
    snakemake.params.spec,
    snakemake.params.local_dir,
    snakemake.input.prompts,
    decoding_json=snakemake.params.decoding,
    eval_samples=snakemake.params.eval_samples,
    out=snakemake.output[0],
    model_name=snakemake.wildcards.strong,
    seed=int(snakemake.wildcards.seed),
    threads=snakemake.threads,
)
