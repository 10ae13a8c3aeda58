"""Shared fixtures: a temporary copy of the repository and one finished tiny pipeline run in it.

Tests that run Snakemake are marked `workflow`; `make test-fast` runs the others (unit tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakePerspective

from helpers import REPO, copy_repo, executed_rules, pending_jobs, snakemake  # noqa: F401  (re-exported)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A repository copy in which the tiny config has run to completion."""
    work = copy_repo(tmp_path_factory.mktemp("tiny"))
    snakemake(work, "--cores", "2")
    return work


@pytest.fixture
def workflow_copy(tmp_path) -> Path:
    """A fresh repository copy with nothing run (for failure cases)."""
    return copy_repo(tmp_path)


@pytest.fixture
def fake_perspective():
    """URL of a local stand-in for the Perspective API that scores every text 0.3."""
    with FakePerspective(score=0.3) as api:
        yield api.url


def pytest_collection_modifyitems(items):
    """Every test that runs the workflow (through a fixture of this file or the helpers) is `workflow`."""
    for item in items:
        if {"tiny_run", "workflow_copy"} & set(item.fixturenames) or item.module.__name__ in WORKFLOW_MODULES:
            item.add_marker(pytest.mark.workflow)


WORKFLOW_MODULES = {"test_workflow", "test_faults", "test_slurm", "test_extensions"}
