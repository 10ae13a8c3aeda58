"""The weak LM's continuations of the held-out prompts: the weak labels of a generation task."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.infer.generate import weak_generations

weak_generations(
    snakemake.input.model,
    snakemake.input.meta,
    snakemake.input.weak_label,
    snakemake.input.val,
    decoding_json=snakemake.params.decoding,
    out=snakemake.output[0],
    model_name=snakemake.wildcards.weak,
    seed=int(snakemake.wildcards.seed),
    threads=snakemake.threads,
    local_dir=snakemake.params.local_dir,
)
