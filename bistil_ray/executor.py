"""The one executor of the step graph (`steps`), whatever runs the builds: this process
(`LocalBackend`, for `bistil_ray.run`) or Ray (`orchestration/trial.py`'s back-end, for a trial).

For each step it computes the key (`steps.step_inputs`), reuses what was published under that key,
else asks its back-end to build, and publishes the result with one manifest (`artifacts.publish_at`):

  - a shared step goes to the store, `<store>/<kind>/<key>/`, built once under the store's lock;
  - a placed step (the phase-2 student) goes to a folder its caller names, `<output_dir>/<pair>/student`
    for a run, `<sweep>/students/<trial_id>` for a trial; a folder built from other inputs is replaced.

Before a build starts, its filesystem must have `min_free_disk_mb` free (else one line naming the
folder: nothing is written, and a rerun or `--resume` continues once space is freed). Either way a
training step keeps its checkpoints in `checkpoints_of(folder)` while it builds, resumes
from them after an interruption, and they are deleted once the folder is published. No Ray here.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bistil_ray.artifacts import Artifact, ArtifactStore, artifact_key, publish_at, read_manifest
from bistil_ray.config import RunConfig
from bistil_ray.method.hooks import LocalHooks
from bistil_ray.output_paths import check_free_space
from bistil_ray.steps import STEP_SECONDS, Fingerprints, Pipeline, Step, StepCall, step_inputs

if TYPE_CHECKING:
    from bistil_ray.inputs import Inputs


def checkpoints_of(final: Path) -> Path:
    """Where a training step that publishes `final` keeps its checkpoints until it is published."""
    return Path(final).parent / ".checkpoints" / Path(final).name


def remove_checkpoints(final: Path) -> None:
    """Once `final` is published: its checkpoints, and their folder if no other build is using it."""
    checkpoints = checkpoints_of(final)
    shutil.rmtree(checkpoints, ignore_errors=True)
    try:
        checkpoints.parent.rmdir()
    except OSError:  # absent, or holding another build's checkpoints
        pass


@dataclass(frozen=True)
class BuildRequest:
    """One step to build, as a back-end receives it."""

    call: StepCall  # the step, the run's settings and the folders of the steps it is built from
    out_dir: Path  # an empty staging folder; rank 0 fills it, the executor publishes it
    checkpoints: Path  # the step's own checkpoint folder: a back-end resumes from what is there
    name: str  # <step column>-<key or folder name>: for logs, error messages and Ray Train's run name


class Backend(Protocol):
    def build(self, request: BuildRequest) -> dict[str, Any]:
        """Build `request.call` into `request.out_dir`; returns what the build measured."""


@dataclass(frozen=True)
class LocalBackend:
    """Builds in this process, from inputs resolved once for the whole run."""

    inputs: Inputs

    def build(self, request: BuildRequest) -> dict[str, Any]:
        call = request.call
        if not call.step.trains:
            return call.step.build(call.pipeline, self.inputs, call.upstream, request.out_dir, LocalHooks())
        started = time.perf_counter()
        hooks = LocalHooks(request.checkpoints / "checkpoint")
        metrics = call.step.build(call.pipeline, self.inputs, call.upstream, request.out_dir, hooks)
        return {**metrics, STEP_SECONDS: time.perf_counter() - started}  # as a training step on Ray reports it


@dataclass
class StepGraph:
    """The step graph of one run (or trial), executed one step at a time on `backend`."""

    pipeline: Pipeline
    run: RunConfig
    prints: Fingerprints
    store: ArtifactStore
    backend: Backend
    built: dict[str, Artifact] = field(default_factory=dict)  # kind -> the step's published folder

    @property
    def keys(self) -> dict[str, str]:
        return {kind: artifact.key for kind, artifact in self.built.items()}

    def path(self, kind: str) -> Path:
        return self.built[kind].path

    def shared(self, step: Step) -> Artifact:
        """`step`'s artifact in the store: built unless someone (this run, a trial, another sweep) has."""
        inputs = step_inputs(step, self.run, self.prints, self.keys)
        key = artifact_key(inputs)
        final = self.store.path(step.kind, key)
        self._check_space(step, final, key)
        return self._published(step, final, self.store.get_or_build(step.kind, inputs, self._builder(step, final)))

    def placed(self, step: Step, final: Path) -> Artifact:
        """`step` published at `final`: kept if built from the same inputs, else (re)built."""
        inputs = step_inputs(step, self.run, self.prints, self.keys)
        self._check_space(step, final, artifact_key(inputs))
        return self._published(step, final, publish_at(final, step.kind, inputs, self._builder(step, final), replace=True))

    def _check_space(self, step: Step, final: Path, key: str) -> None:
        """Before anything is built, or replaced: a step that would build needs the free space."""
        manifest = read_manifest(final)
        if manifest is None or manifest["key"] != key:
            check_free_space(final.parent, self.run.min_free_disk_mb * 2**20, f"{step.label} ({final})")

    def _builder(self, step: Step, final: Path):
        call = StepCall(self.pipeline, step, self.run, {kind: self.path(kind) for kind in step.upstream})

        def build(out_dir: Path) -> dict[str, Any]:
            return self.backend.build(BuildRequest(call, out_dir, checkpoints_of(final), f"{step.column}-{final.name}"))

        return build

    def _published(self, step: Step, final: Path, artifact: Artifact) -> Artifact:
        remove_checkpoints(final)
        self.built[step.kind] = artifact
        return artifact
