"""Continuations of the evaluation prompts by a trained LM checkpoint (weak LM, ceiling or student)."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.infer.generate import model_generations

model_generations(
    snakemake.input.model,
    snakemake.input.meta,
    snakemake.params.local_dir,
    snakemake.input.prompts,
    decoding_json=snakemake.params.decoding,
    eval_samples=snakemake.params.eval_samples,
    out=snakemake.output[0],
    model_name=snakemake.params.model_name,
    seed=int(snakemake.params.seed),
    threads=snakemake.threads,
)
