"""Artifact files keep the user's umask, whatever the writer does with its temporary file."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest
import torch

from w2s_align.files import apply_umask, write_atomic, write_text


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_keep_the_umask_with_writers_that_replace_the_file(tmp_path, umask_027):
    from safetensors.torch import save_file

    write_atomic(tmp_path / "w.safetensors", lambda tmp: save_file({"w": torch.zeros(2)}, str(tmp)))
    write_text("x", tmp_path / "t.txt")
    assert mode(tmp_path / "w.safetensors") == 0o640
    assert mode(tmp_path / "t.txt") == 0o640
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_apply_umask_opens_a_private_temporary_folder(tmp_path, umask_027):
    folder = tempfile.mkdtemp(dir=tmp_path)
    fd, name = tempfile.mkstemp(dir=folder)
    os.close(fd)
    assert mode(folder) == 0o700 and mode(name) == 0o600
    apply_umask(folder)
    assert mode(folder) == 0o750 and mode(name) == 0o640
