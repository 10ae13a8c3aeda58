# The preference (DPO) track of a generation task with a `preferences` block: candidates sampled once by
# the untuned strong model, each judge's scores of them, DPO students (weak judge) and ceiling (gold judge).
# Generation, scoring and perplexity of the DPO models are the rules of predict.smk and score.smk (folders
# dpo-student/..., dpo-ceiling/...); pair log-probs and metrics: preference_metrics.smk.


rule preference_candidates:
    input:
        unpack(converted_of(prefs("generator"))),
        source_of("corpus"),
        prompts=paths.PROMPTS,
    output:
        paths.CANDIDATES,
    log:
        paths.fill(paths.LOG, name="{task}/preferences/candidates"),
    benchmark:
        paths.fill(paths.BENCHMARK, name="{task}/preferences/candidates")
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request(prefs("generator"), "candidates", share=0.5),
    params:
        corpus=task_block("corpus", w2s.CorpusSpec),
        settings=from_config(paths.candidate_settings, "task"),
        generator=spec_of(prefs("generator")),
        decoding=from_config(w2s.decoding, "task"),
        local_dir=local_dir,
        code=code("preference_candidates.py"),
    script:
        "../scripts/preference_candidates.py"


rule judge_candidates:
    """One judge's toxicity scores of both texts of every candidate pair: its preferences."""
    input:
        unpack(lambda wc: paths.scorer_checkpoint(SETTINGS, wc.scorer, "judge_")),
        candidates=rules.preference_candidates.output[0],
    output:
        paths.JUDGED,
    log:
        paths.fill(paths.LOG, name="{task}/preferences/judge_{scorer}"),
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **api_quota.api_request(
            SETTINGS,
            "judge",
            request(
                from_config(paths.scorer_model, "scorer"),
                "judge",
                share=0.5,
                gpu=from_config(paths.scorer_gpus, "scorer"),
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
        gold_judged=from_config(paths.gold_judge_file, "task"),
    output:
        paths.GOLD_TEST_PAIRS,
    log:
        paths.fill(paths.LOG, name="{task}/preferences/gold_test_pairs"),
    conda:
        "../../envs/w2s.yaml"
    params:
        min_gold_margin=prefs("min_gold_margin"),
        code=code("gold_test_pairs.py"),
    script:
        "../scripts/gold_test_pairs.py"


rule train_dpo_ceiling:
    input:
        unpack(converted_of("strong")),
        candidates=rules.preference_candidates.output[0],
        judged=from_config(paths.gold_judge_file, "task"),
    output:
        model=paths.run_file(paths.LM, "dpo-ceiling"),
        meta=paths.run_file(paths.LM_META, "dpo-ceiling"),
    log:
        run_log("dpo-ceiling", "train"),
    benchmark:
        run_benchmark("dpo-ceiling", "train")
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request("strong", "train_dpo"),
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
        unpack(converted_of("strong")),
        candidates=rules.preference_candidates.output[0],
        judged=paths.fill(paths.JUDGED, scorer="{judge}"),
    output:
        model=paths.run_file(paths.LM, "dpo-student"),
        meta=paths.run_file(paths.LM_META, "dpo-student"),
    log:
        run_log("dpo-student", "train"),
    benchmark:
        run_benchmark("dpo-student", "train")
    params:
        local_dir=local_dir,
        spec=spec_of("strong"),
        hparams=from_config(w2s.dpo_hparams, "task", "strong"),
        max_length=max_length,
        beta=prefs("beta"),
        strategy=strategy_spec,
        code=code("train_dpo.py"),
