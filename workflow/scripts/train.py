"""Train a classifier (weak, ceiling or student) and save its checkpoint; strong models also
predict val and test in the same job."""
from w2s_align.io import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.train import train_classifier

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
)
if hasattr(snakemake.output, "predictions"):
    from w2s_align.predict import write_predictions

    write_predictions(
        snakemake.output.model,
        snakemake.output.meta,
        {"val": snakemake.input.val, "test": snakemake.input.test},
        snakemake.output.predictions,
        prefix="pred",
        model_name=snakemake.wildcards.strong,
        threads=snakemake.threads,
    )
