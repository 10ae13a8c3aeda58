rule metrics:
    input:
        weak_labels="results/{task}/weak/{weak}/seed{seed}/weak_labels.parquet",
        student="results/{task}/student/{weak}__{strong}/{strategy}/seed{seed}/predictions.parquet",
        ceiling="results/{task}/ceiling/{strong}/seed{seed}/predictions.parquet",
        code=package_code("w2s_align.metrics"),
    output:
        "results/{task}/metrics/{weak}__{strong}/{strategy}/seed{seed}.parquet",
    wildcard_constraints:
        task=CLASSIFICATION,
    params:
        identity=run_identity,
        n_boot=config["metrics"]["bootstrap"],
    log:
        "logs/{task}/metrics/{weak}__{strong}/{strategy}/seed{seed}.log",
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/metrics.py"


rule summary:
    input:
        metrics=all_metrics(),
        code=package_code("w2s_align.tables"),
    output:
        csv=report("results/tables/summary.csv", caption="../report/summary.rst", category="Tables"),
        parquet="results/tables/summary.parquet",
        md=report("results/tables/summary.md", caption="../report/summary_md.rst", category="Tables"),
    log:
        "logs/tables/summary.log",
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/summary.py"


rule plots:
    input:
        summary=rules.summary.output.parquet,
        code=package_code("w2s_align.plots"),
    output:
        scores=report(
            expand("results/plots/{task}_scores.png", task=sorted(config["tasks"])),
            caption="../report/scores.rst",
            category="Plots",
        ),
        pgr=report(
            expand("results/plots/{task}_pgr.png", task=sorted(config["tasks"])),
            caption="../report/pgr.rst",
            category="Plots",
        ),
        fluency=report(
            expand("results/plots/{task}_toxicity_vs_perplexity.png", task=tasks_of("generation")),
            caption="../report/fluency.rst",
            category="Plots",
        ),
    params:
        tasks=sorted(config["tasks"]),
        generation_tasks=tasks_of("generation"),
    log:
        "logs/plots/plots.log",
    conda:
        "../../envs/w2s.yaml"
    script:
        "../scripts/plots.py"
