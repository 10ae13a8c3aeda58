# w2s-align: weak-to-strong generalization on alignment tasks (arXiv 2410.12621), stage by stage.
#   splits -> weak model -> weak labels -> student (weak labels) / ceiling (ground truth) -> metrics -> tables
#   generation tasks: weak labels are the weak LM's continuations; every model's are scored for toxicity
# Paths: results/{task}/splits|weak|ceiling|student|metrics/..., results/tables/summary.{csv,md}
from snakemake.utils import min_version

min_version("9.19")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/weak.smk"
include: "workflow/rules/strong.smk"
include: "workflow/rules/generation.smk"
include: "workflow/rules/metrics.smk"


wildcard_constraints:
    task=r"[A-Za-z0-9.-]+(_[A-Za-z0-9.-]+)*",
    weak=r"[A-Za-z0-9.-]+(_[A-Za-z0-9.-]+)*",
    strong=r"[A-Za-z0-9.-]+(_[A-Za-z0-9.-]+)*",
    strategy=r"[A-Za-z0-9.-]+(_[A-Za-z0-9.-]+)*",
    seed=r"\d+",


ruleorder: ensemble_labels > weak_labels


localrules:
    all,
    split_data,
    ensemble_labels,
    split_corpus,
    metrics,
    toxicity_metrics,
    summary,
    plots,


rule all:
    default_target: True
    input:
        rules.summary.output,
        rules.plots.output,
