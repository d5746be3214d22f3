"""Storage that stops taking writes, simulated at the OS calls for one table's files only (chmod
cannot make a folder unwritable to root, as which the tests may run).

Import them by name: `from storage_faults import fill_the_disk_for, make_read_only_for`.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from bistil_ray.atomic import TMP_PREFIX


def is_staging_of(path: str | os.PathLike, table: Path) -> bool:
    """Whether `path` is a temporary file the atomic writer stages `table` in."""
    path = Path(path)
    return path.parent == table.parent and path.name.startswith(f"{TMP_PREFIX}{table.name}-")


def fill_the_disk_for(monkeypatch: pytest.MonkeyPatch, table: Path) -> None:
    """Writes of `table` fail as on a full disk: when the data is flushed to it, after the staging
    file was created."""
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        if is_staging_of(os.readlink(f"/proc/self/fd/{descriptor}"), table):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)


def make_read_only_for(monkeypatch: pytest.MonkeyPatch, table: Path) -> None:
    """Writes of `table` fail as on a file system remounted read-only: no file can be created."""
    real_open = os.open

    def open_file(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and is_staging_of(path, table):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_file)
