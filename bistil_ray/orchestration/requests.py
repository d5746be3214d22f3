"""The typed hand-offs between a trial, the driver-side runners (`train_runner`) and the code inside
Ray's workers (`worker`): the size of a trial's workers, and one training step to run on them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bistil_ray.method.hooks import TrainHooks
from bistil_ray.orchestration.live_view import Progress
from bistil_ray.orchestration.metrics import TrialMetrics
from bistil_ray.orchestration.sweep_config import ResourcesConfig

TrainStep = Callable[[Path, TrainHooks], dict[str, Any]]  # (out_dir, hooks) -> metrics; `steps.StepCall` is one
ReportToTune = Callable[[dict[str, Any]], dict[str, Any]]  # an evaluation's metrics -> what to add to its Tune report


@dataclass(frozen=True)
class WorkerGroup:
    """The size and failure budget of every training run (and task) of one trial."""

    workers: int
    use_gpu: bool
    cpus_per_worker: float
    gpus_per_worker: float
    worker_restarts: int
    controller_failures: int
    start_timeout_s: float

    @classmethod
    def from_resources(cls, resources: ResourcesConfig) -> "WorkerGroup":
        return cls(
            workers=resources.workers_per_trial,
            use_gpu=resources.use_gpu,
            cpus_per_worker=resources.cpus_per_worker,
            gpus_per_worker=resources.gpus_per_worker,
            worker_restarts=resources.worker_restarts,
            controller_failures=resources.controller_failures,
            start_timeout_s=resources.worker_start_timeout_s,
        )

    @property
    def threads(self) -> int:
        """Torch threads of a worker: one per CPU it holds, at least one."""
        return max(1, int(self.cpus_per_worker))

    def worker_resources(self) -> dict[str, float]:
        return {"CPU": self.cpus_per_worker, **({"GPU": self.gpus_per_worker} if self.use_gpu else {})}


@dataclass(frozen=True)
class TrainRequest:
    """One training step to run on Ray, as both runners (a Ray task, Ray Train) take it."""

    step: TrainStep
    out_dir: Path  # rank 0 writes it; on storage every node sees
    checkpoints: Path  # the step's checkpoint folder (`executor.checkpoints_of`): resumed from, kept until published
    name: str  # <step>-<key or trial id>: for error messages and Ray Train's run name
    group: WorkerGroup
    progress: Progress | None = None  # the live board's line for this trial
    metrics: TrialMetrics | None = None  # the trial's metrics on the Ray dashboard
    report_to_tune: ReportToTune | None = None  # with it, each evaluation is also a Tune result of the trial
