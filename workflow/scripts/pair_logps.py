"""Log-probs of both texts of every gold test pair under a DPO model or the untuned base (the reference)."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.infer.pair_logps import pair_logps

pair_logps(
    snakemake.input.candidates,
    snakemake.input.gold_pairs,
    snakemake.output[0],
    max_length=snakemake.params.max_length,
    threads=snakemake.threads,
    model_file=snakemake.input.get("model"),
    meta_file=snakemake.input.get("meta"),
    spec_json=snakemake.params.spec,
    local_dir=snakemake.params.local_dir,
)
