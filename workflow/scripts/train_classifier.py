"""Train a classifier (weak, ceiling or student) and save its checkpoint."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.train.classify import train_classifier

train_classifier(
    train_path=snakemake.input.train,
    train_split=snakemake.params.train_split,
    val_path=snakemake.input.val,
    target=snakemake.params.target,
    spec_json=snakemake.params.spec,
    hparams_json=snakemake.params.hparams,
    max_length=snakemake.params.max_length,
    seed=int(snakemake.wildcards.seed),
    threads=snakemake.threads,
    model_out=snakemake.output.model,
    meta_out=snakemake.output.meta,
    strategy_json=snakemake.params.get("strategy", "{}"),
    local_dir=snakemake.params.local_dir,
)
