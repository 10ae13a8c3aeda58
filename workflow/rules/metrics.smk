# Test metrics of one run (weak, W2S student, ceiling; + base for generation) with PGR and bootstrap CIs.


rule metrics:
    input:
        weak_labels=paths.run_file(paths.WEAK_LABELS, "weak"),
        student=paths.run_file(paths.PREDICTIONS, "student"),
        ceiling=paths.run_file(paths.PREDICTIONS, "ceiling"),
    output:
        metrics_file("labels"),
    log:
        metrics_file("labels", paths.METRICS_LOG),
    conda:
        "../../envs/w2s.yaml"
    params:
        identity=run_identity("labels"),
        n_boot=w2s.bootstrap_resamples(SETTINGS),
        code=code("metrics.py"),
    script:
        "../scripts/metrics.py"


rule toxicity_metrics:
    input:
        unpack(from_config(paths.toxicity_inputs, "task", "weak", "strong", "strategy", "seed")),
    output:
        metrics_file("demonstrations"),
    log:
        metrics_file("demonstrations", paths.METRICS_LOG),
    conda:
        "../../envs/w2s.yaml"
    params:
        identity=run_identity("demonstrations"),
        n_boot=w2s.bootstrap_resamples(SETTINGS),
        code=code("toxicity_metrics.py"),
    script:
        "../scripts/toxicity_metrics.py"
