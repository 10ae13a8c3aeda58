"""Per-task figures: weak / W2S / ceiling scores, and PGR by strategy."""
from w2s_align.io import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.plots import plot_all

tasks = snakemake.params.tasks
plot_all(
    snakemake.input.summary,
    {t: {"scores": s, "pgr": p} for t, s, p in zip(tasks, snakemake.output.scores, snakemake.output.pgr)},
)
