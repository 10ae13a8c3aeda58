"""Gold continuations of a generation task's training prompts (sampled by the generator, kept by the
judge)."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.infer.gold import make_gold

make_gold(
    snakemake.params.corpus,
    snakemake.input.prompts,
    generator_json=snakemake.params.generator,
    local_dir=snakemake.params.local_dir,
    judge_json=snakemake.params.judge,
    decoding_json=snakemake.params.decoding,
    out=snakemake.output[0],
    threads=snakemake.threads,
    cache_dir=snakemake.params.cache,
    judge_model=snakemake.input.get("judge_model"),
    judge_meta=snakemake.input.get("judge_meta"),
)
