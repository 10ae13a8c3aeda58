# Tables and plots across every run (of the tasks selected with `only`, or all).


rule summary:
    input:
        metrics=layout.metric_files(SETTINGS) + layout.preference_files(SETTINGS),
    output:
        csv=report("results/tables/summary.csv", caption="../report/summary.rst", category="Tables"),
        parquet="results/tables/summary.parquet",
        md=report("results/tables/summary.md", caption="../report/summary_md.rst", category="Tables"),
    log:
        "logs/tables/summary.log",
    conda:
        "../../envs/w2s.yaml"
    params:
        code=code("summary.py"),
    script:
        "../scripts/summary.py"


rule plots:
    input:
        summary=rules.summary.output.parquet,
    output:
        scores=report(
            expand("results/plots/{task}_scores.png", task=TASKS), caption="../report/scores.rst", category="Plots"
        ),
        pgr=report(expand("results/plots/{task}_pgr.png", task=TASKS), caption="../report/pgr.rst", category="Plots"),
        fluency=report(
            expand("results/plots/{task}_toxicity_vs_perplexity.png", task=w2s.tasks_of(SETTINGS, "generation")),
            caption="../report/fluency.rst",
            category="Plots",
        ),
        tracks=report(
            expand("results/plots/{task}_tracks.png", task=w2s.preference_tasks(SETTINGS)),
            caption="../report/tracks.rst",
            category="Plots",
        ),
    log:
        "logs/plots/plots.log",
    conda:
        "../../envs/w2s.yaml"
    params:
        tasks=TASKS,
        generation_tasks=w2s.tasks_of(SETTINGS, "generation"),
        preference_tasks=w2s.preference_tasks(SETTINGS),
        code=code("plots.py"),
    script:
        "../scripts/plots.py"
