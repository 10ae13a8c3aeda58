"""Run one stage outside Snakemake, in this process: for a debugger, or to rerun a failed cluster job by
hand on a GPU node (the idea of PyPSA-Eur's mock_snakemake).

    python -m w2s_align.debug RULE TARGET [--configfile FILE ...] [--dry]
    python -m pdb -m w2s_align.debug train_student
    results/safety/student/gpt2-scratch__minilm-l6/naive/seed0/classifier.safetensors

Run from the repository root (or a copy of it). The job's input, output, params, wildcards, threads, resources
and log are built by Snakemake's own API from the Snakefile and config, exactly as a real run would; the
rule's script then runs with that `snakemake` object. Inputs must exist (run `snakemake TARGET --until RULE`
first, or the upstream jobs)."""

from __future__ import annotations

import argparse
import logging
import os
import runpy
from pathlib import Path


def mock_snakemake(rule_name: str, target: str, configfiles: list[str] = (), snakefile: str = "Snakefile"):
    """The `snakemake` object a script of `rule_name` would get for the job that writes `target`, and the
    path of that script."""
    from snakemake.api import Workflow
    from snakemake.dag import DAG
    from snakemake.jobs import Job
    from snakemake.logging import LoggerManager
    from snakemake.script import Snakemake
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        ResourceSettings,
        StorageSettings,
        WorkflowSettings,
    )

    workflow = Workflow(
        config_settings=ConfigSettings(configfiles=[Path(f) for f in configfiles]),
        resource_settings=ResourceSettings(),
        workflow_settings=WorkflowSettings(),
        storage_settings=StorageSettings(),
        dag_settings=DAGSettings(rerun_triggers=[]),
        storage_provider_settings={},
        logger_manager=LoggerManager(logger=logging.getLogger("snakemake"), settings=OutputSettings()),
    )
    workflow.include(Path(snakefile).resolve())
    for f in configfiles:
        workflow.configfile(f)
    workflow.global_resources = {}
    rule = workflow.get_rule(rule_name)
    wildcards = rule.get_wildcards(target)
    if wildcards is None:
        raise SystemExit(f"rule {rule_name} does not write {target}")
    job = Job(rule, DAG(workflow, rules=[rule]), wildcards)
    smk = Snakemake(
        job.input,
        job.output,
        job.params,
        job.wildcards,
        job.threads,
        job.resources,
        job.log,
        workflow.config,
        rule.name,
        None,
    )
    for path in [*smk.log, *smk.output]:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return smk, os.path.join(rule.basedir, rule.script)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m w2s_align.debug", description=__doc__.split("\n\n")[0])
    parser.add_argument("rule")
    parser.add_argument("target", help="an output file of the job to run")
    parser.add_argument("--configfile", action="append", default=[], help="as for snakemake (repeatable)")
    parser.add_argument("--dry", action="store_true", help="print the job's input, output and params only")
    args = parser.parse_args(argv)
    smk, script = mock_snakemake(args.rule, args.target, args.configfile)
    if args.dry:
        for name in ("input", "output", "params", "wildcards", "log"):
            values = getattr(smk, name)
            print(f"{name}: {dict(values.items()) or list(values)}")
        print(f"threads: {smk.threads}\nscript: {script}")
        return
    runpy.run_path(script, init_globals={"snakemake": smk}, run_name="__main__")


if __name__ == "__main__":
    main()
