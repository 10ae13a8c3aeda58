"""The gold judge's test pairs of a task's preference candidates, read by the pair log-probs and the
metrics."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.data.preferences import make_gold_test_pairs

make_gold_test_pairs(
    snakemake.input.candidates,
    snakemake.input.gold_judged,
    float(snakemake.params.min_gold_margin),
    snakemake.output[0],
)
