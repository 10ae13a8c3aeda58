"""Gold prompt/continuation pairs of a generation task, split for fine-tuning."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.data.corpus import make_corpus_splits

make_corpus_splits(
    snakemake.params.corpus,
    int(snakemake.wildcards.seed),
    dict(snakemake.output.items()),
    snakemake.input.get("gold"),
)
