"""Storage that stops taking writes, simulated at the OS calls for one table's files only (chmod
cannot make a folder unwritable to root, as which the tests may run).

Import them by name: `from storage_faults import fill_the_disk_for, make_read_only_for`; and a real
small filesystem, `small_filesystem`.
"""

from __future__ import annotations

import errno
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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


@contextmanager
def small_filesystem(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (`8m`) mounted at the new folder `folder`, unmounted after; the test is
    skipped where this process may not mount one."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()[:200]}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
