"""The weak LM's continuations: weak labels for the held-out prompts, and its evaluation samples."""
from w2s_align.io import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.generation import weak_generations

weak_generations(
    snakemake.input.model,
    snakemake.input.meta,
    snakemake.input.weak_label,
    snakemake.input.val,
    snakemake.input.test,
    decoding_json=snakemake.params.decoding,
    eval_samples=snakemake.params.eval_samples,
    labels_out=snakemake.output.labels,
    eval_out=snakemake.output.generations,
    model_name=snakemake.wildcards.weak,
    seed=int(snakemake.wildcards.seed),
    threads=snakemake.threads,
)
