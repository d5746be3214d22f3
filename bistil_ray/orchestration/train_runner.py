"""Running one step of the method on Ray: a training phase in a `TorchTrainer`, anything else in a task.

A training step is `step(out_dir, hooks) -> metrics`, run identically on every data-parallel worker
(DDP over gloo on CPU, NCCL on GPU); rank 0 writes `out_dir`, which must be on storage every node
sees. Each evaluation becomes a `ray.train.report` with rank 0's checkpoint, so a restarted worker
group resumes from it (`worker_restarts` times at most), and so does a later run with the same name
(a retried trial, a resumed sweep). Controller failures are bounded too, and a worker group that
cannot start within `worker_start_timeout_s` (after `controller_failures` retries) fails with a
`WorkersUnavailableError` naming the resources it asked for, instead of hanging.

Ray Train restarts a worker group whatever failed. A step that raised a deterministic error (see
`failures`) leaves its reason in `out_dir`; the restarted workers find it and stop at once, and the
run ends in a `DeterministicFailure` with that reason instead of training the step again.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import ray
import ray.train
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from bistil_ray.method.hooks import LocalHooks, TrainHooks
from bistil_ray.orchestration.failures import (
    DeterministicFailure,
    is_deterministic,
    record_step_failure,
    step_failure,
)
from bistil_ray.orchestration.live_view import Progress
from bistil_ray.orchestration.metrics import TrialMetrics
from bistil_ray.orchestration.sweep_config import ResourcesConfig

# The custom resource a trial function holds instead of a CPU: a trial holding a CPU would starve its
# own Train workers on a small machine.
TRIAL_DRIVER = "trial_driver"
STEP_METRICS = "bistil_step_metrics.json"

TrainStep = Callable[[Path, TrainHooks], dict[str, Any]]

# Ray Train's (internal) errors for a worker group the cluster cannot place: no such resources at all,
# or none free within the start time-out. Matched by name: the classes are not public.
WORKER_GROUP_START_FAILURES = ("InsufficientClusterResourcesError", "WorkerGroupStartupTimeoutError")


class WorkersUnavailableError(RuntimeError):
    """A training phase's workers could not start: the message names the resources asked for."""


def ray_train_env_vars(resources: ResourcesConfig) -> dict[str, str]:
    """Ray Train settings that exist only as environment variables (set for the whole Ray job)."""
    return {
        "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": str(resources.worker_start_timeout_s),
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": str(resources.report_poll_interval_s),
    }


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

    def worker_resources(self) -> dict[str, float]:
        return {"CPU": self.cpus_per_worker, **({"GPU": self.gpus_per_worker} if self.use_gpu else {})}


@dataclass
class RayTrainHooks:
    """`TrainHooks` inside a Ray Train worker: evaluations become `ray.train.report`s."""

    progress: Progress | None = None
    metrics: TrialMetrics | None = None
    extra_metrics: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    wants_checkpoints: bool = True
    resume_from: Path | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None:
            self.resume_from = Path(checkpoint.to_directory())

    def on_evaluation(self, metrics: dict[str, Any], checkpoint: Path | None) -> None:
        if self.extra_metrics is not None:
            metrics = {**metrics, **self.extra_metrics(metrics)}
        if ray.train.get_context().get_world_rank() == 0:
            if self.progress is not None:
                self.progress.update(step=metrics.get("step"))
            if self.metrics is not None:
                self.metrics.training_progress(metrics)
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(checkpoint) if checkpoint else None)


def _worker_loop(config: dict[str, Any]) -> None:
    work = ray.get(config["work"])
    if step_failure(work["out_dir"]) is not None:
        return  # an earlier attempt failed in a way that a restart cannot change
    hooks = RayTrainHooks(progress=work["progress"], metrics=work["metrics"], extra_metrics=work["extra_metrics"])
    try:
        metrics = work["step"](work["out_dir"], hooks)
    except Exception as error:
        if is_deterministic(error):
            record_step_failure(work["out_dir"], error)
        raise
    if ray.train.get_context().get_world_rank() == 0:
        (work["out_dir"] / STEP_METRICS).write_text(json.dumps(metrics, default=str))


def run_training(
    step: TrainStep,
    out_dir: Path,
    *,
    name: str,
    runs_dir: Path,
    group: WorkerGroup,
    progress: Progress | None = None,
    metrics: TrialMetrics | None = None,
    report_to_tune: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run a training step on `group`; returns rank 0's metrics. With `report_to_tune`, each
    evaluation, extended by it, is also a Tune result of the calling trial (for a scheduler)."""
    # The work goes to the workers through the object store, not in the trainer: the Train controller
    # unpickles the trainer, and would otherwise import torch, transformers and the whole method only
    # to pass them on (measured: ~3 s of every phase's start-up on 2 cores, bench/ray_fixed_cost.py).
    work = ray.put(
        {"step": step, "out_dir": Path(out_dir), "progress": progress, "metrics": metrics, "extra_metrics": report_to_tune}
    )
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"work": work},
        torch_config=TorchConfig(backend="nccl" if group.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=group.workers, use_gpu=group.use_gpu, resources_per_worker=group.worker_resources()
        ),
        run_config=RunConfig(
            name=name,
            storage_path=str(runs_dir),
            failure_config=FailureConfig(
                max_failures=group.worker_restarts, controller_failure_limit=group.controller_failures
            ),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            callbacks=[TuneReportCallback()] if report_to_tune else [],
        ),
    )
    try:
        trainer.fit()
    except ray.train.ControllerError as error:
        if type(error.controller_failure).__name__ not in WORKER_GROUP_START_FAILURES:
            raise
        raise WorkersUnavailableError(unavailable_message(group)) from error
    except ray.train.TrainingFailedError as error:
        if step_failure(out_dir) is None:
            raise
        raise DeterministicFailure(f"{step_name(name)}: {step_failure(out_dir)}") from error
    if step_failure(out_dir) is not None:
        raise DeterministicFailure(f"{step_name(name)}: {step_failure(out_dir)}")
    metrics_file = Path(out_dir) / STEP_METRICS
    metrics = json.loads(metrics_file.read_text())
    metrics_file.unlink()
    shutil.rmtree(Path(runs_dir) / name, ignore_errors=True)
    return metrics


def step_name(run_name: str) -> str:
    """`phase2` of `phase2-<trial id>`, `task_teacher` of `task_teacher-<key>`."""
    return run_name.rsplit("-", 1)[0]


def unavailable_message(group: WorkerGroup) -> str:
    """Why a worker group did not start, in terms of the resources settings."""
    asked = group.worker_resources()

    def amounts(resources: dict[str, float]) -> str:
        return ", ".join(f"{resources.get(name, 0.0):g} {name}" for name in asked)

    return (
        f"resources: {group.workers} Ray Train worker(s) of {amounts(asked)} each could not start "
        f"(worker_start_timeout_s {group.start_timeout_s:g}s, {group.controller_failures + 1} attempt(s)); "
        f"the cluster has {amounts(ray.cluster_resources())} in all, {amounts(ray.available_resources())} free now, "
        "and each worker's resources must be free on one node"
    )


@ray.remote
def _call(function: Callable[..., Any], *args: Any) -> Any:
    return function(*args)


def run_task(function: Callable[..., Any], *args: Any, group: WorkerGroup) -> Any:
    """`function(*args)` in a Ray task holding one worker's resources (a step without training)."""
    task = _call.options(
        num_cpus=group.cpus_per_worker,
        num_gpus=group.gpus_per_worker if group.use_gpu else 0,
        # Not inside the trial's placement group, which holds only its trial_driver slot.
        scheduling_strategy="DEFAULT",
    )
    return ray.get(task.remote(function, *args))


def _untrained(step: TrainStep, out_dir: Path) -> dict[str, Any]:
    return step(out_dir, LocalHooks())


def run_untrained(step: TrainStep, out_dir: Path, *, group: WorkerGroup) -> dict[str, Any]:
    """A step without a training loop (no checkpoints, one process) in a Ray task."""
    return run_task(_untrained, step, Path(out_dir), group=group)
