"""Output paths, checked before the expensive work starts (before Ray starts, before a model loads):
a folder or file this process will write must be creatable where the user named it.

Each check tries what the write will do (it creates and removes a temporary entry) rather than
reading permission bits, which say nothing for root, read-only mounts or virtual filesystems.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bistil_ray.errors import UserInputError


def _writable_ancestor(folder: Path, path: Path, what: str) -> Path:
    """The nearest existing folder at or above `folder`, refused unless a file can be created in it;
    an error names `path`, the output asked for."""
    existing = folder
    while not existing.exists() and not existing.is_symlink():
        existing = existing.parent
    if not existing.is_dir():
        raise UserInputError(f"{what} {path}: {existing} is a file, not a folder")
    try:
        tempfile.TemporaryDirectory(dir=existing).cleanup()
    except OSError as error:
        raise UserInputError(f"{what} {path}: cannot write in {existing} ({error.strerror or error})") from None
    return existing


def check_output_folder(path: Path, what: str) -> None:
    """`path` is a folder, or can be created as one, and files can be written in it; `what` names
    the flag or setting that gave it."""
    path = Path(path)
    with _os_errors_named(path, what):
        if path.exists() and not path.is_dir():
            raise UserInputError(f"{what} {path}: a file stands there, not a folder")
        _writable_ancestor(path, path, what)


def check_output_file(path: Path, what: str) -> None:
    """`path` can be written as a file: not a folder, and its folder exists or can be created."""
    path = Path(path)
    with _os_errors_named(path, what):
        if path.is_dir():
            raise UserInputError(f"{what} {path}: a folder stands there, not a file")
        _writable_ancestor(path.parent, path, what)


@contextmanager
def _os_errors_named(path: Path, what: str) -> Iterator[None]:
    """A path the filesystem refuses even to look at (a name too long, a symlink loop, a folder it
    may not enter) is the user's to fix: one line naming it."""
    try:
        yield
    except OSError as error:
        raise UserInputError(f"{what} {path}: {error.strerror or error}") from None


class DiskSpaceError(UserInputError):
    """Too little free space to start writing: a retry changes nothing until space is freed."""


def check_free_space(folder: Path, needed_bytes: int, what: str) -> None:
    """At least `needed_bytes` free on the filesystem that holds (or will hold) `folder`; `what`
    names what was about to be written there."""
    existing = Path(folder)
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed_bytes:
        raise DiskSpaceError(
            f"{what}: {existing} has {free / 2**20:.0f} MiB free, {needed_bytes / 2**20:.0f} MiB needed to start it "
            "(min_free_disk_mb); free space there and run again (a sweep: --resume)"
        )
