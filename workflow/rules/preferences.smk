# The preference (DPO) track of a generation task with a `preferences` block: candidates sampled once by
# the untuned strong model, each judge's scores of them, DPO students (weak judge) and ceiling (gold judge).
# Generation, scoring and perplexity of the DPO models are the rules of predict.smk and score.smk (folders
# dpo-student/..., dpo-ceiling/...); pair log-probs and metrics: preference_metrics.smk.


rule preference_candidates:
    input:
        unpack(base_of(prefs("generator"))),
        source_of("corpus"),
        prompts="results/{task}/prompts.parquet",
    output:
        "results/{task}/preferences/candidates.parquet",
    log:
        "logs/{task}/preferences/candidates.log",
    benchmark:
        "results/benchmarks/{task}/preferences/candidates.tsv"
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request(prefs("generator"), share=0.5),
    params:
        corpus=task_block("corpus", w2s.CorpusSpec),
        settings=from_config(layout.candidate_settings, "task"),
        generator=spec_of(prefs("generator")),
        decoding=from_config(w2s.decoding, "task"),
        local_dir=local_dir,
        code=code("preference_candidates.py"),
    script:
        "../scripts/preference_candidates.py"


rule judge_candidates:
    """One judge's toxicity scores of both texts of every candidate pair: its preferences."""
    input:
        unpack(lambda wc: layout.scorer_checkpoint(config, wc.scorer, "judge_")),
        candidates=rules.preference_candidates.output[0],
    output:
        "results/{task}/preferences/judge_{scorer}.parquet",
    log:
        "logs/{task}/preferences/judge_{scorer}.log",
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **api_quota.api_request(
            config,
            "judge_candidates",
            request(
                from_config(layout.scorer_model, "scorer"), share=0.5, gpu=from_config(layout.scorer_gpus, "scorer")
            ),
        ),
    params:
        judge=scorer_setting(None),
        cache=RUN.score_cache,
        code=code("judge_candidates.py"),
    script:
        "../scripts/judge_candidates.py"


rule gold_test_pairs:
    """The gold judge's test pairs (margin >= min_gold_margin, each in a fixed random order), once per task."""
    input:
        candidates=rules.preference_candidates.output[0],
        gold_judged=from_config(layout.gold_judge_file, "task"),
    output:
        "results/{task}/preferences/gold_test_pairs.parquet",
    log:
        "logs/{task}/preferences/gold_test_pairs.log",
    conda:
        "../../envs/w2s.yaml"
    params:
        min_gold_margin=prefs("min_gold_margin"),
        code=code("gold_test_pairs.py"),
    script:
        "../scripts/gold_test_pairs.py"


rule train_dpo_ceiling:
    input:
        unpack(base_of("strong")),
        candidates=rules.preference_candidates.output[0],
        judged=from_config(layout.gold_judge_file, "task"),
    output:
        model="results/{task}/dpo-ceiling/{strong}/seed{seed}/lm.safetensors",
        meta="results/{task}/dpo-ceiling/{strong}/seed{seed}/lm.json",
    log:
        "logs/{task}/dpo-ceiling/{strong}/seed{seed}/train.log",
    benchmark:
        "results/benchmarks/{task}/dpo-ceiling/{strong}/seed{seed}/train.tsv"
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request("strong"),
    params:
        local_dir=local_dir,
        spec=spec_of("strong"),
        hparams=from_config(w2s.dpo_hparams, "task", "strong"),
        max_length=max_length,
        beta=prefs("beta"),
        strategy=w2s.canonical(w2s.Strategy, {"dpo_weighting": "none"}),
        code=code("train_dpo.py"),
    script:
        "../scripts/train_dpo.py"


use rule train_dpo_ceiling as train_dpo_student with:
    input:
        unpack(base_of("strong")),
        candidates=rules.preference_candidates.output[0],
        judged="results/{task}/preferences/judge_{weak}.parquet",
    output:
        model="results/{task}/dpo-student/{weak}__{strong}/{strategy}/seed{seed}/lm.safetensors",
        meta="results/{task}/dpo-student/{weak}__{strong}/{strategy}/seed{seed}/lm.json",
    log:
        "logs/{task}/dpo-student/{weak}__{strong}/{strategy}/seed{seed}/train.log",
    benchmark:
        "results/benchmarks/{task}/dpo-student/{weak}__{strong}/{strategy}/seed{seed}/train.tsv"
    params:
        local_dir=local_dir,
        spec=spec_of("strong"),
        hparams=from_config(w2s.dpo_hparams, "task", "strong"),
        max_length=max_length,
        beta=prefs("beta"),
        strategy=strategy_spec,
        code=code("train_dpo.py"),
