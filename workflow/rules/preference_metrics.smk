# The preference track's evaluation: log-probs of the texts of the gold judge's test pairs (gold_test_pairs,
# preferences.smk) under the base (the reference) and each DPO model, whose difference is the implicit reward, and the run metrics (eval/preference.py).


rule reference_pair_logps:
    """Log-probs of both texts of every gold test pair under the untuned base: the implicit reward's reference."""
    input:
        unpack(base_of("strong")),
        candidates=rules.preference_candidates.output[0],
        gold_pairs=rules.gold_test_pairs.output[0],
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
        gold_pairs=rules.gold_test_pairs.output[0],
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
        gold_pairs=rules.gold_test_pairs.output[0],
    output:
        "results/{task}/metrics/{weak}__{strong}/{strategy}/seed{seed}.preference.parquet",
    log:
        "logs/{task}/metrics/{weak}__{strong}/{strategy}/seed{seed}.preference.log",
    conda:
        "../../envs/w2s.yaml"
    params:
        identity=from_config(layout.run_identity, "task", "weak", "strong", "strategy", "seed"),
        beta=prefs("beta"),
        n_boot=w2s.bootstrap_resamples(config),
        code=code("preference_metrics.py"),
    script:
        "../scripts/preference_metrics.py"
