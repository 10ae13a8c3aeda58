"""Candidate pairs of the preference track: two continuations of each training prompt by the untuned
generator."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.infer.candidates import make_candidates

make_candidates(
    snakemake.params.corpus,
    snakemake.params.settings,
    snakemake.input.prompts,
    generator_json=snakemake.params.generator,
    local_dir=snakemake.params.local_dir,
    decoding_json=snakemake.params.decoding,
    out=snakemake.output[0],
    threads=snakemake.threads,
)
