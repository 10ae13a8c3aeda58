# Test metrics of one run (weak, W2S student, ceiling; + base for generation) with PGR and bootstrap CIs.


rule metrics:
    input:
        weak_labels="results/{task}/weak/{weak}/seed{seed}/weak_labels.parquet",
        student="results/{task}/student/{weak}__{strong}/{strategy}/seed{seed}/predictions.parquet",
        ceiling="results/{task}/ceiling/{strong}/seed{seed}/predictions.parquet",
    output:
        "results/{task}/metrics/{weak}__{strong}/{strategy}/seed{seed}.parquet",
    log:
        "logs/{task}/metrics/{weak}__{strong}/{strategy}/seed{seed}.log",
    conda:
        "../../envs/w2s.yaml"
    params:
        identity=from_config(layout.run_identity, "task", "weak", "strong", "strategy", "seed"),
        n_boot=w2s.bootstrap_resamples(SETTINGS),
        code=code("metrics.py"),
    script:
        "../scripts/metrics.py"


rule toxicity_metrics:
    input:
        unpack(from_config(layout.toxicity_inputs, "task", "weak", "strong", "strategy", "seed")),
    output:
        "results/{task}/metrics/{weak}__{strong}/{strategy}/seed{seed}.toxicity.parquet",
    log:
        "logs/{task}/metrics/{weak}__{strong}/{strategy}/seed{seed}.toxicity.log",
    conda:
        "../../envs/w2s.yaml"
    params:
        identity=from_config(layout.run_identity, "task", "weak", "strong", "strategy", "seed"),
        n_boot=w2s.bootstrap_resamples(SETTINGS),
        code=code("toxicity_metrics.py"),
    script:
        "../scripts/toxicity_metrics.py"
