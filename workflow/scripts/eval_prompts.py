"""The evaluation prompts of a generation task (the same for every seed and model)."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.data.corpus import make_prompts

make_prompts(snakemake.params.prompts, snakemake.output[0])
