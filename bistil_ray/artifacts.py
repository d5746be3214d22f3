"""Content-addressed artifacts, each built once: task teachers, vocabularies, phase-1 students.

An artifact's key is a hash of everything that determines it: the settings of its step and the
fingerprints of its inputs (teacher weights, task data, corpora), plus the keys of the artifacts
it is built from. It lives at `<root>/<kind>/<key>/`, published by one atomic rename, with a
manifest recording what went into it and what its build measured. The same manifest marks a folder
published at a place its caller names (`publish_at`: a run's or a trial's student), where it says
whether the folder was built from the same inputs.

Build-once coordination is a file lock per key on the shared storage, not an actor: the OS releases
it when its holder dies (a crashed trial, a killed driver), so no stale claim can block a key; it
also coordinates separate sweeps and drivers that share the storage, which a named actor, scoped
to one driver's lifetime, could not. Whoever gets the lock first builds; the others wait on it and
then find the published directory. Waiting trials hold no CPUs, so they cannot starve the builder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from filelock import FileLock

from bistil_ray.atomic import atomic_directory, remove_dead_staging
from bistil_ray.config import expand_user
from bistil_ray.errors import UserInputError

# Part of every key: bump it when a change to a step alters what it builds from the same inputs.
ARTIFACT_FORMAT = 2
MANIFEST = "bistil_artifact.json"
ARTIFACTS = "artifacts"  # the store's folder under a --storage, for runs and sweeps alike


def storage_root(value: str) -> Path:
    """`--storage` as an absolute local path; `file://` URIs are accepted. An empty value is refused:
    it would resolve to the current folder, which is never what a user who typed it meant."""
    if not value.strip():
        raise UserInputError("--storage: empty; give the folder that holds (or will hold) the sweeps and artifacts")
    parsed = urlparse(value)
    if parsed.scheme == "file":
        return Path(parsed.path).resolve()
    if parsed.scheme and len(parsed.scheme) > 1:
        raise UserInputError(
            f"--storage {value}: only local paths and file:// URIs are supported; mount remote storage "
            "(NFS, s3fs, gcsfuse) on every node and pass the mount point"
        )
    return expand_user(value, f"--storage {value}").resolve()


def store_under(storage: Path) -> "ArtifactStore":
    return ArtifactStore(Path(storage) / ARTIFACTS)


def artifact_key(inputs: dict[str, Any]) -> str:
    payload = json.dumps({"format": ARTIFACT_FORMAT, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:20]


@dataclass(frozen=True)
class Artifact:
    kind: str
    key: str
    path: Path
    metrics: dict[str, Any]  # what its build measured (vocab_size, source_score, ...)
    cache_hit: bool  # built by someone else: earlier, or while this request waited
    seconds: float  # this request's time: building, waiting, or just looking
    build_seconds: float  # what building it cost its builder: what a request would pay were nothing shared


class ArtifactStore:
    def __init__(self, root: Path, poll_interval_s: float = 0.5):
        self.root = Path(root)
        self.poll_interval_s = poll_interval_s

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def find(self, kind: str, key: str) -> Path | None:
        path = self.path(kind, key)
        return path if path.is_dir() else None

    def get_or_build(self, kind: str, inputs: dict[str, Any], build: Callable[[Path], dict[str, Any]]) -> Artifact:
        """The artifact for `inputs`, calling `build(empty_directory) -> metrics` only if no one has."""
        started = time.perf_counter()
        final = self.path(kind, artifact_key(inputs))
        if not final.is_dir():
            final.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(final.parent / f"{final.name}.lock", poll_interval=self.poll_interval_s, preserve_lock_file=True)
            with lock:
                return publish_at(final, kind, inputs, build, started=started)
        return _artifact(read_manifest(final), final, cache_hit=True, seconds=time.perf_counter() - started)


def read_manifest(final: Path) -> dict[str, Any] | None:
    manifest = Path(final) / MANIFEST
    return json.loads(manifest.read_text()) if manifest.is_file() else None


def publish_at(
    final: Path,
    kind: str,
    inputs: dict[str, Any],
    build: Callable[[Path], dict[str, Any]],
    *,
    replace: bool = False,
    started: float | None = None,
) -> Artifact:
    """`final` as built from `inputs`: kept if its manifest has their key, else built by
    `build(empty_directory) -> metrics` and published in one rename. A folder built from other
    inputs is replaced with `replace`, else refused. The caller is `final`'s one writer (it holds
    the store's lock, or owns the folder: a run's or trial's student)."""
    started = time.perf_counter() if started is None else started
    final, key = Path(final), artifact_key(inputs)
    if final.exists():
        manifest = read_manifest(final)
        if manifest is not None and manifest["key"] == key:
            return _artifact(manifest, final, cache_hit=True, seconds=time.perf_counter() - started)
        if not replace:
            raise UserInputError(f"{final}: built from other inputs (its {MANIFEST} says so); choose another folder")
        shutil.rmtree(final)
    remove_dead_staging(final)
    build_started = time.perf_counter()
    with atomic_directory(final) as staging:
        metrics = build(staging)
        manifest = {
            "kind": kind,
            "key": key,
            "inputs": inputs,
            "metrics": metrics,
            "build_seconds": time.perf_counter() - build_started,
            "built_at": datetime.now(timezone.utc).isoformat(),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))
    return _artifact(manifest, final, cache_hit=False, seconds=time.perf_counter() - started)


def _artifact(manifest: dict[str, Any], path: Path, *, cache_hit: bool, seconds: float) -> Artifact:
    return Artifact(
        manifest["kind"], manifest["key"], path, manifest["metrics"], cache_hit, seconds, manifest["build_seconds"]
    )

