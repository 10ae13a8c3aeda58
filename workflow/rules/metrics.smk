rule metrics:
    input:
        weak_labels="results/{task}/weak/{weak}/seed{seed}/weak_labels.parquet",
        student="results/{task}/student/{weak}__{strong}/{label_mode}/seed{seed}/predictions.parquet",
        ceiling="results/{task}/ceiling/{strong}/seed{seed}/predictions.parquet",
        code=package_code("w2s_align.metrics"),
    output:
        "results/{task}/metrics/{weak}__{strong}/{label_mode}/seed{seed}.parquet",
    params:
        identity=run_identity,
        n_boot=config["metrics"]["bootstrap"],
    log:
        "logs/{task}/metrics/{weak}__{strong}/{label_mode}/seed{seed}.log",
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/metrics.py"


rule summary:
    input:
        metrics=all_metrics(),
        code=package_code("w2s_align.tables"),
    output:
        csv="results/tables/summary.csv",
        md="results/tables/summary.md",
    log:
        "logs/tables/summary.log",
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/summary.py"
