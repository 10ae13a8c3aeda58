"""Perplexity of continuations under the task's reference LM."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.infer.generate import perplexity

perplexity(
    snakemake.input.generations,
    snakemake.params.spec,
    snakemake.params.local_dir,
    max_length=snakemake.params.max_length,
    out=snakemake.output[0],
    threads=snakemake.threads,
)
