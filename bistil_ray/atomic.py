"""Atomic publication: readers see a complete file or directory, or none at all.

Everything this package publishes (converted teachers, vocabularies, students, result tables) is
written under a temporary name beside its final path and renamed into place, so a process killed
mid-write leaves only a `.tmp-*` entry that is ignored and cleaned up by the next writer.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TMP_PREFIX = ".tmp-"


def _temporary_sibling(final: Path) -> Path:
    return final.parent / f"{TMP_PREFIX}{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield an empty directory to fill; on success it becomes `final` in one rename.

    If `final` already exists when the body finishes (another process published it first), the new
    copy is discarded and the existing one kept: published directories are never replaced.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = _temporary_sibling(final)
    staging.mkdir()
    try:
        yield staging
        _fsync_tree(staging)
        try:
            os.rename(staging, final)
        except OSError:
            if not final.exists():
                raise
            shutil.rmtree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one rename (the old content stays readable until then).

    A failure (disk full, read-only storage) raises an `OSError` of the same errno that names `path`:
    the OS's own message names no file, or only the temporary one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _replace_by_rename(path, data)
    except OSError as error:
        raise OSError(error.errno, f"cannot write {path}: {error.strerror or error}") from error


def _replace_by_rename(path: Path, data: bytes) -> None:
    descriptor, staging = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}-", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_dead_staging(final: Path) -> None:
    """Staging folders for `final` left by writers that died; call only as its one live writer."""
    for leftover in final.parent.glob(f"{TMP_PREFIX}{final.name}-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def remove_stale_temporaries(folder: Path) -> None:
    """Delete `.tmp-*` leftovers of writers that died (call only when no writer is active)."""
    for entry in Path(folder).glob(f"{TMP_PREFIX}*"):
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
