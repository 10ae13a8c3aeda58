# The preference (DPO) track of a generation task with a `preferences` block: candidate pairs sampled once by
# the untuned strong model, each judge's preferences, DPO students (weak judge) and ceiling (gold judge), the
# pair log-probs behind the implicit reward, and the run metrics. Generation, scoring and perplexity of the
# DPO models are the rules of predict.smk and score.smk (folders dpo-student/..., dpo-ceiling/...).


def prefs(key):
    return from_config(lambda config, task: layout.preference_setting(config, task, key), "task")


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
        **webapi.api_request(
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


rule reference_pair_logps:
    """Log-probs of both texts of every test pair under the untuned base: the implicit reward's reference."""
    input:
        unpack(base_of("strong")),
        candidates=rules.preference_candidates.output[0],
    output:
        "results/{task}/preferences/reference_{strong}.parquet",
    log:
        "logs/{task}/preferences/reference_{strong}.log",
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request("strong", share=0.5),
    params:
        local_dir=local_dir,
        spec=spec_of("strong"),
        max_length=max_length,
        code=code("pair_logps.py"),
    script:
        "../scripts/pair_logps.py"


rule pair_logps:
    """... and under a DPO model (student or ceiling)."""
    input:
        unpack(base_of(run_model)),
        model="results/{task}/{model_run}/lm.safetensors",
        meta="results/{task}/{model_run}/lm.json",
        candidates=rules.preference_candidates.output[0],
    output:
        "results/{task}/{model_run}/pair_logps.parquet",
    log:
        "logs/{task}/{model_run}/pair_logps.log",
    wildcard_constraints:
        model_run=DPO_RUN,
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request(run_model, share=0.5),
    params:
        local_dir=local_dir,
        spec=None,
        max_length=max_length,
        code=code("pair_logps.py"),
    script:
        "../scripts/pair_logps.py"


rule preference_metrics:
    input:
        unpack(from_config(layout.preference_inputs, "task", "weak", "strong", "strategy", "seed")),
    output:
        "results/{task}/metrics/{weak}__{strong}/{strategy}/seed{seed}.preference.parquet",
    log:
        "logs/{task}/metrics/{weak}__{strong}/{strategy}/seed{seed}.preference.log",
    conda:
        "../../envs/w2s.yaml"
    params:
        identity=from_config(layout.run_identity, "task", "weak", "strong", "strategy", "seed"),
        beta=prefs("beta"),
        min_gold_margin=prefs("min_gold_margin"),
        n_boot=w2s.bootstrap_resamples(config),
        code=code("preference_metrics.py"),
    script:
        "../scripts/preference_metrics.py"
