# w2s-align: weak-to-strong generalization on alignment tasks (arXiv 2410.12621), stage by stage.
#   splits -> weak model -> weak labels -> student (weak labels) / ceiling (ground truth) -> predictions
#   -> metrics -> tables; generation tasks: weak labels are the weak LM's continuations, every model's
#   continuations of the evaluation prompts are scored for toxicity and perplexity.
#   Preference track (a generation task's `preferences`): DPO students on weak judges' preferences, ceiling on gold.
# Paths: every artifact's template is in src/w2s_align/settings/paths.py (results/{task}/..., results/tables/).
from snakemake.utils import min_version

min_version("9.19")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/weak.smk"
include: "workflow/rules/strong.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/preferences.smk"
include: "workflow/rules/preference_metrics.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/report.smk"


wildcard_constraints:
    task=r"[A-Za-z0-9.-]+(_[A-Za-z0-9.-]+)*",
    weak=r"[A-Za-z0-9.-]+(_[A-Za-z0-9.-]+)*",
    judge=r"[A-Za-z0-9.-]+(_[A-Za-z0-9.-]+)*",
    strong=r"[A-Za-z0-9.-]+(_[A-Za-z0-9.-]+)*",
    strategy=r"[A-Za-z0-9.-]+(_[A-Za-z0-9.-]+)*",
    seed=r"\d+",


ruleorder: ensemble_labels > weak_labels


localrules:
    all,
    split_data,
    split_corpus,
    eval_prompts,
    ensemble_labels,
    metrics,
    toxicity_metrics,
    gold_test_pairs,
    preference_metrics,
    summary,
    plots,


rule all:
    default_target: True
    input:
        rules.summary.output,
        rules.plots.output,
