"""Gold prompt/continuation splits and evaluation prompts of a generation task."""
from w2s_align.io import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.corpus import make_corpus_splits

make_corpus_splits(snakemake.params.corpus, snakemake.params.prompts, int(snakemake.wildcards.seed),
                   dict(snakemake.output.items()))
