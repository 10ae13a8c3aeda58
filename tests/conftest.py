"""Shared fixtures: a temporary copy of the repository and one finished tiny pipeline run in it.

Tests that run Snakemake are marked `workflow`; `make test-fast` runs the others (unit tests). The suite runs
on two pytest-xdist workers (`addopts` in pyproject.toml; `-n 0` runs it in one process): the expensive
shared runs are made once per session (`once`), and the tests of a module whose module-scoped fixture cannot
be shared between processes (a SLURM cluster, a module's run) go to one worker together
(MODULES_ON_ONE_WORKER, `pytest_xdist_make_scheduler`)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

from fakes import FakePerspective
from helpers import (  # noqa: F401  (re-exported)
    REPO,
    TINY_CORES,
    copy_repo,
    copy_run,
    executed_rules,
    make_pairs,
    pending_jobs,
    snakemake,
)


def once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """The folder `name`, made by `build(folder)` once per test session. Under pytest-xdist the first worker
    that asks builds it in the temporary folder all workers share (the parent of each worker's own) while
    the others wait; a failed build fails every later request at once instead of building again."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    root = tmp_path_factory.getbasetemp().parent
    folder, done, failed = root / name, root / f"{name}.done", root / f"{name}.failed"
    with FileLock(root / f"{name}.lock"):
        if failed.exists():
            raise AssertionError(f"{name} failed in another worker:\n{failed.read_text()}")
        if not done.exists():
            try:
                shutil.rmtree(folder, ignore_errors=True)  # what a killed worker left
                folder.mkdir()
                build(folder)
            except BaseException as error:
                failed.write_text(f"{type(error).__name__}: {error}")
                raise
            done.touch()
    return folder


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A repository copy in which the tiny config has run to completion, one per session and shared by
    every worker: read it, dry-run or lint it, never change it (`tiny_copy` is a private copy to edit)."""

    def build(work: Path) -> None:
        copy_repo(work)
        snakemake(work, "--cores", TINY_CORES)

    return once(tmp_path_factory, "tiny", build)


@pytest.fixture
def tiny_copy(tiny_run, tmp_path) -> Path:
    """A private copy of the finished tiny run (`helpers.copy_run`): edit its config or code, rerun or
    break its jobs."""
    return copy_run(tiny_run, tmp_path / "tiny")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer Llama and its tokenizer saved like a downloaded pretrained model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from w2s_align.models.causal_lm import EOS
    from w2s_align.models.common import SCRATCH_SPECIAL, train_scratch_tokenizer

    path = tmp_path_factory.mktemp("tiny_llama")
    prompts, conts = make_pairs(64, seed=5)
    tokenizer = train_scratch_tokenizer([p + c for p, c in zip(prompts, conts)], 300, [*SCRATCH_SPECIAL, EOS])
    tokenizer.eos_token = EOS
    tokenizer.save_pretrained(path)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


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
    """Every test that runs the workflow (through a fixture of this file or the helpers) is `workflow`; the
    longest work comes first (ORDER), so that the two workers start on the long runs at once and end on
    short tests. The tests of a module in MODULES_ON_ONE_WORKER stay together, at the rank of its first."""
    for item in items:
        if WORKFLOW_FIXTURES & set(item.fixturenames) or item.module.__name__ in WORKFLOW_MODULES:
            item.add_marker(pytest.mark.workflow)
    ranks = {item.nodeid: rank(item) for item in items}
    for module in MODULES_ON_ONE_WORKER:
        members = [item.nodeid for item in items if item.module.__name__ == module]
        first = min((ranks[nodeid] for nodeid in members), default=0)
        ranks.update(dict.fromkeys(members, first))
    items.sort(key=lambda item: ranks[item.nodeid])  # stable: collection order within a rank


def rank(item: pytest.Item) -> int:
    fixtures = set(item.fixturenames)
    return next(
        (i for i, names in enumerate(ORDER) if names & fixtures),
        len(ORDER) + (not item.get_closest_marker("workflow")),
    )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's scheduler for `-n N` (its default `--dist load`): tests are handed out one at a time
    in collection order, except that a module in MODULES_ON_ONE_WORKER goes to one worker as a whole.

    (Not `--dist loadgroup` with `xdist_group` marks: pytest-xdist 3.8 marks a group in the test's node id,
    which pytest 9.2 no longer lets a plugin change, so the groups are silently ignored:
    pytest-dev/pytest-xdist#1386.) Another `--dist` gets pytest-xdist's own scheduler."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModulesOnOneWorker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if Path(path).stem in MODULES_ON_ONE_WORKER else nodeid

    config.option.loadscopereorder = False  # keep ORDER (LoadScopeScheduling would put big modules first)
    return ModulesOnOneWorker(config, log)


WORKFLOW_FIXTURES = {"tiny_run", "workflow_copy", "preference_run"}
WORKFLOW_MODULES = {"test_workflow", "test_faults", "test_slurm", "test_extensions"}
# Modules whose tests share a module-scoped fixture that must exist once: one SLURM cluster per machine (its
# ports); the preference track's tiny run (minutes)
MODULES_ON_ONE_WORKER = {"test_slurm", "test_preferences"}
# The first tests to hand out: the extension run (which makes the tiny run), the SLURM tests, the preference
# run, the other users of the tiny run; then the other workflow tests, then the unit tests
ORDER = [{"extended_run"}, {"slurm_cluster"}, {"preference_run"}, {"tiny_run"}]
