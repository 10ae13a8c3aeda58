"""An ensemble supervisor: the mean of its members' soft weak labels."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.infer.weak_labels import ensemble_labels

ensemble_labels(dict(snakemake.input.items()), snakemake.output[0], snakemake.wildcards.weak)
