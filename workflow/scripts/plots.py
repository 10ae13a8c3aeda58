"""Per-task figures: weak / W2S / ceiling scores, PGR by strategy, and by strong-model size (ladder)."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.report.plots import plot_all

outputs = {
    t: {"scores": s, "pgr": p}
    for t, s, p in zip(snakemake.params.tasks, snakemake.output.scores, snakemake.output.pgr)
}
for task, path in zip(snakemake.params.generation_tasks, snakemake.output.fluency):
    outputs[task]["fluency"] = path
for task, path in zip(snakemake.params.preference_tasks, snakemake.output.tracks):
    outputs[task]["tracks"] = path
for task, path in zip(snakemake.params.ladder, snakemake.output.ladder):
    outputs[task]["ladder"] = path
plot_all(snakemake.input.summary, outputs, snakemake.params.ladder)
