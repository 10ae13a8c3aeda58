"""Best-of-N weak labels: the weak LM's least toxic of N continuations per prompt, by a weak selector."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.infer.best_of_n import best_of_n

best_of_n(
    snakemake.input.model,
    snakemake.input.meta,
    snakemake.input.weak_label,
    snakemake.input.val,
    decoding_json=snakemake.params.decoding,
    n=int(snakemake.wildcards.n),
    selector_json=snakemake.params.selector,
    out=snakemake.output[0],
    model_name=snakemake.wildcards.weak,
    seed=int(snakemake.wildcards.seed),
    threads=snakemake.threads,
    cache_dir=snakemake.params.cache,
    selector_model=snakemake.input.get("selector_model"),
    selector_meta=snakemake.input.get("selector_meta"),
    local_dir=snakemake.params.local_dir,
)
