"""Train the offline toxicity scorer and report its held-out AUROC."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.train.scorer import train_scorer

train_scorer(
    snakemake.params.data,
    snakemake.params.spec,
    snakemake.params.hparams,
    max_length=snakemake.params.max_length,
    threads=snakemake.threads,
    model_out=snakemake.output.model,
    meta_out=snakemake.output.meta,
    heldout_out=snakemake.output.heldout,
)
