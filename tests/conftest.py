"""Shared fixtures: a temporary copy of the repository and one finished tiny pipeline run in it.

Tests that run Snakemake are marked `workflow`; `make test-fast` runs the others (unit tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import FakePerspective
from helpers import REPO, copy_repo, executed_rules, make_pairs, pending_jobs, snakemake  # noqa: F401  (re-exported)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A repository copy in which the tiny config has run to completion."""
    work = copy_repo(tmp_path_factory.mktemp("tiny"))
    snakemake(work, "--cores", "2")
    return work


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
    """Every test that runs the workflow (through a fixture of this file or the helpers) is `workflow`."""
    for item in items:
        if WORKFLOW_FIXTURES & set(item.fixturenames) or item.module.__name__ in WORKFLOW_MODULES:
            item.add_marker(pytest.mark.workflow)


WORKFLOW_FIXTURES = {"tiny_run", "workflow_copy", "preference_run"}
WORKFLOW_MODULES = {"test_workflow", "test_faults", "test_slurm", "test_extensions"}
