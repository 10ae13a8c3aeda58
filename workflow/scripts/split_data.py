"""Clean a task's data and write its four splits."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.data.classification import SPLITS, make_splits

make_splits(snakemake.params.data, int(snakemake.wildcards.seed), {s: snakemake.output[s] for s in SPLITS})
