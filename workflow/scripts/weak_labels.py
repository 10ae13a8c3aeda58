"""The weak model labels the held-out weak_label split (and val, test) with soft and hard labels."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.infer.weak_labels import write_weak_labels

write_weak_labels(
    snakemake.input.model,
    snakemake.input.meta,
    {s: snakemake.input[s] for s in ("weak_label", "val", "test")},
    snakemake.output[0],
    model_name=snakemake.wildcards.weak,
    threads=snakemake.threads,
    local_dir=snakemake.params.local_dir,
)
