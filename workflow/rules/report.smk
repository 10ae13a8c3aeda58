# Tables and plots across every run (of the tasks selected with `only`, or all).


rule summary:
    input:
        metrics=paths.metric_files(SETTINGS) + paths.preference_files(SETTINGS),
    output:
        csv=report(paths.fill(paths.SUMMARY, ext="csv"), caption="../report/summary.rst", category="Tables"),
        parquet=paths.fill(paths.SUMMARY, ext="parquet"),
        md=report(paths.fill(paths.SUMMARY, ext="md"), caption="../report/summary_md.rst", category="Tables"),
    log:
        paths.fill(paths.LOG, name="tables/summary"),
    conda:
        "../../envs/w2s.yaml"
    params:
        code=code("summary.py"),
    script:
        "../scripts/summary.py"


rule plots:
    input:
        summary=rules.summary.output.parquet,
        sizes=[f for models in paths.ladder_sizes(SETTINGS).values() for f in models.values()],
    output:
        scores=report(
            expand(paths.fill(paths.PLOT, name="scores"), task=TASKS),
            caption="../report/scores.rst",
            category="Plots",
        ),
        pgr=report(
            expand(paths.fill(paths.PLOT, name="pgr"), task=TASKS),
            caption="../report/pgr.rst",
            category="Plots",
        ),
        fluency=report(
            expand(
                paths.fill(paths.PLOT, name="toxicity_vs_perplexity"),
                task=w2s.tasks_of(SETTINGS, "generation"),
            ),
            caption="../report/fluency.rst",
            category="Plots",
        ),
        tracks=report(
            expand(paths.fill(paths.PLOT, name="tracks"), task=w2s.preference_tasks(SETTINGS)),
            caption="../report/tracks.rst",
            category="Plots",
        ),
        ladder=report(
            expand(paths.fill(paths.PLOT, name="ladder"), task=SETTINGS.ladder_tasks()),
            caption="../report/ladder.rst",
            category="Plots",
        ),
    log:
        paths.fill(paths.LOG, name="plots/plots"),
    conda:
        "../../envs/w2s.yaml"
    params:
        tasks=TASKS,
        generation_tasks=w2s.tasks_of(SETTINGS, "generation"),
        preference_tasks=w2s.preference_tasks(SETTINGS),
        ladder=paths.ladder_sizes(SETTINGS),
        code=code("plots.py"),
    script:
        "../scripts/plots.py"
