"""Every job's params, input, resources and threads of a config's DAG, digested per rule: the record that
reading the settings another way changed no job's params (tests/test_settings.py; tests/params_snapshot.json
holds the digests of the shipped configs). Regenerate only when a change of params is intended:

    PYTHONPATH=src python tests/params_snapshot.py > tests/params_snapshot.json
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SKIPPED_PARAMS = ("code",)  # code fingerprints follow the stage modules, not the settings
CONFIGS = [
    (),
    ("configs/paper.yaml",),
    ("configs/full.yaml",),
    ("configs/preferences.yaml",),
    ("configs/strategies.yaml",),
    ("configs/compare-tracks.yaml",),
    ("configs/toxicity-classification.yaml",),
    ("configs/ladder.yaml",),
    ("tests/configs/tiny.yaml",),
    ("tests/configs/tiny.yaml", "tests/configs/tiny-preferences.yaml"),
]


def _value(value):
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)


@contextlib.contextmanager
def dag_workflow(configfiles: tuple[str, ...] = (), overrides: dict | None = None) -> Iterator:
    """The Snakemake workflow of config.yaml + `configfiles` (+ `overrides`) with the DAG of a run from
    scratch built in this process (as plan.dag_jobs does)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        Quietness,
        ResourceSettings,
    )

    settings = ConfigSettings(configfiles=[REPO / f for f in configfiles], config=overrides or {})
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(),
            config_settings=settings,
            snakefile=REPO / "Snakefile",
            workdir=REPO,
        )
        workflow_api.dag(DAGSettings(forceall=True))
        workflow = workflow_api._workflow
        workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True, nolock=True)
        workflow._build_dag()
        yield workflow


def dag_params(configfiles: tuple[str, ...] = ()) -> dict[str, str]:
    """Rule -> sha256 of the sorted (wildcards, params, input, resources, threads) of its jobs in a run from
    scratch of config.yaml + `configfiles`."""
    jobs: dict[str, list[str]] = {}
    with dag_workflow(configfiles) as workflow:
        for job in workflow.dag.jobs:
            params = {k: _value(v) for k, v in job.params.items() if k not in SKIPPED_PARAMS}
            resources = {
                k: _value(v) for k, v in job.resources.items() if not k.startswith("_") and k != "tmpdir"
            }
            row = [dict(job.wildcards.items()), params, sorted(map(str, job.input)), resources, job.threads]
            jobs.setdefault(job.rule.name, []).append(json.dumps(row, sort_keys=True, default=str))
    return {
        rule: hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest()[:16]
        for rule, rows in sorted(jobs.items())
    }


if __name__ == "__main__":
    snapshot = {"+".join(files) or "config.yaml": dag_params(files) for files in CONFIGS}
    json.dump(snapshot, sys.stdout, indent=1, sort_keys=True)
    print()
