# The preference track's evaluation: log-probs of the texts of the gold judge's test pairs (gold_test_pairs,
# preferences.smk) under the base (the reference) and each DPO model, whose difference is the implicit reward, and the run metrics (eval/preference.py).


rule reference_pair_logps:
    """Log-probs of both texts of every gold test pair under the untuned base: the implicit reward's reference."""
    input:
        unpack(converted_of("strong")),
        candidates=rules.preference_candidates.output[0],
        gold_pairs=rules.gold_test_pairs.output[0],
    output:
        paths.REFERENCE_LOGPS,
    log:
        paths.fill(paths.LOG, name="{task}/preferences/reference_{strong}"),
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request("strong", "pair_logps", share=0.5),
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
        unpack(converted_of(run_model)),
        model=paths.run_file(paths.LM, "model_run"),
        meta=paths.run_file(paths.LM_META, "model_run"),
        candidates=rules.preference_candidates.output[0],
        gold_pairs=rules.gold_test_pairs.output[0],
    output:
        paths.run_file(paths.PAIR_LOGPS, "model_run"),
    log:
        run_log("model_run", "pair_logps"),
    wildcard_constraints:
        model_run=DPO_RUN,
    conda:
        "../../envs/w2s.yaml"
    threads: RUN.threads
    resources:
        **request(run_model, "pair_logps", share=0.5),
    params:
        local_dir=local_dir,
        spec=None,
        max_length=max_length,
        code=code("pair_logps.py"),
    script:
        "../scripts/pair_logps.py"


rule preference_metrics:
    input:
        unpack(from_config(paths.preference_inputs, "task", "judge", "strong", "strategy", "seed")),
        gold_pairs=rules.gold_test_pairs.output[0],
    output:
        metrics_file("preferences"),
    log:
        metrics_file("preferences", paths.METRICS_LOG),
    conda:
        "../../envs/w2s.yaml"
    params:
        identity=run_identity("preferences"),
        beta=prefs("beta"),
        n_boot=w2s.bootstrap_resamples(SETTINGS),
        code=code("preference_metrics.py"),
    script:
        "../scripts/preference_metrics.py"
