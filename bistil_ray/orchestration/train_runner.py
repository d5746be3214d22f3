"""Running one step of the method on Ray, driver side: a training phase on its workers, anything
else in a task. What runs inside the workers is `worker`; what passes between is `requests`.

A training step is a `TrainRequest`: `step(out_dir, hooks) -> metrics`, where rank 0 writes
`out_dir`, which must be on storage every node sees. `run_training` runs it

  - on one worker (`workers_per_trial: 1`) in a Ray task holding that worker's CPUs/GPU. Ray keeps
    idle task workers and reuses them, so such a phase starts in a process that already imported
    torch and the method, where a `TorchTrainer` starts a controller and a worker group, each a new
    Python process, for every phase (bench/ray_fixed_cost.py compares the two);
  - on several workers in a `TorchTrainer` (DDP over gloo on CPU, NCCL on GPU).

Either way every evaluation's checkpoint is kept in the request's `checkpoints` folder, so a worker
that died is started again (`worker_restarts` times at most) and resumes from it, and so does a
later request for the same folder (a retried trial, a resumed sweep); with `report_to_tune` each evaluation is also a Tune result of
the calling trial, for its scheduler. A worker that cannot start within `worker_start_timeout_s`
fails with a `WorkersUnavailableError` naming the resources it asked for, instead of hanging.

A step that raised a deterministic error (see `failures`) is not started again: the run ends in a
`DeterministicFailure` with its reason. (Ray Train restarts a worker group whatever failed, so
there the reason is left in `out_dir`, where the restarted workers find it and stop at once.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import ray
import ray.train
from ray import tune
from ray.exceptions import RayError
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from bistil_ray.orchestration.failures import DeterministicFailure, is_deterministic, one_line, step_failure
from bistil_ray.orchestration.requests import ReportToTune, TrainRequest, WorkerGroup
from bistil_ray.orchestration.sweep_config import ResourcesConfig
from bistil_ray.orchestration.worker import (
    STEP_METRICS,
    Evaluated,
    Finished,
    build_untrained,
    call_with_threads,
    train_here,
    train_loop_per_worker,
)

# The custom resource a trial function holds instead of a CPU: a trial holding a CPU would starve its
# own Train workers on a small machine.
TRIAL_DRIVER = "trial_driver"

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


def run_training(request: TrainRequest) -> dict[str, Any]:
    """Run a training step on its group: `train_in_task` for one worker, else `train_data_parallel`;
    returns rank 0's metrics, with their `STEP_SECONDS`."""
    return (train_in_task if request.group.workers == 1 else train_data_parallel)(request)


# --- one worker: a Ray task ----------------------------------------------------------------------

# A GPU task's process ends with the task (max_calls=1): a reused process would keep the CUDA
# context, and the device, of the task before.
_train_on_cpu = ray.remote(max_retries=0)(train_here)
_train_on_gpu = ray.remote(max_retries=0, max_calls=1)(train_here)


def train_in_task(request: TrainRequest) -> dict[str, Any]:
    """`run_training` on one worker: a Ray task, checkpointing into `request.checkpoints`."""
    group = request.group
    if group.workers != 1:
        raise ValueError(f"train_in_task: one worker, not {group.workers}")
    remote = (_train_on_gpu if group.use_gpu else _train_on_cpu).options(**_task_resources(group))
    for attempt in range(group.worker_restarts + 1):
        try:
            return _follow(remote.remote(request), group, request.report_to_tune)
        except RayError as error:  # the task's own exception, or its process or node lost
            if is_deterministic(error):
                raise DeterministicFailure(f"{step_name(request.name)}: {one_line(error)}") from error
            if attempt == group.worker_restarts:
                raise
    raise AssertionError("unreachable")


def _follow(task: ray.ObjectRefGenerator, group: WorkerGroup, report_to_tune: ReportToTune | None) -> dict[str, Any]:
    """The task's result; its evaluations, extended by `report_to_tune`, reported to Tune as they come."""
    started, _ = ray.wait([task], timeout=group.start_timeout_s)
    if not started:
        ray.cancel(task, force=True)
        raise WorkersUnavailableError(unavailable_message(group, attempts=1))
    for reference in task:
        item = ray.get(reference)
        if isinstance(item, Evaluated) and report_to_tune is not None:
            tune.report({**item.metrics, **report_to_tune(item.metrics)})
        if isinstance(item, Finished):
            return item.metrics
    raise RuntimeError("the training task ended without its result")


def _task_resources(group: WorkerGroup) -> dict[str, Any]:
    return {
        "num_cpus": group.cpus_per_worker,
        "num_gpus": group.gpus_per_worker if group.use_gpu else 0,
        # Not inside the trial's placement group, which holds only its trial_driver slot.
        "scheduling_strategy": "DEFAULT",
    }


# --- several workers: Ray Train --------------------------------------------------------------------


def train_data_parallel(request: TrainRequest) -> dict[str, Any]:
    """`run_training` in a `TorchTrainer` of `request.group.workers` workers (any number, one included),
    its run folder the request's `checkpoints`."""
    group, out_dir = request.group, request.out_dir
    # The request goes to the workers through the object store, not in the trainer: the Train controller
    # unpickles the trainer, and would otherwise import torch, transformers and the whole method only
    # to pass them on (bench/results/ray_fixed_cost.md measures what that costs every phase).
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"request": ray.put(request)},
        torch_config=TorchConfig(backend="nccl" if group.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=group.workers, use_gpu=group.use_gpu, resources_per_worker=group.worker_resources()
        ),
        run_config=RunConfig(
            name=request.checkpoints.name,
            storage_path=str(request.checkpoints.parent),
            failure_config=FailureConfig(
                max_failures=group.worker_restarts, controller_failure_limit=group.controller_failures
            ),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            callbacks=[TuneReportCallback()] if request.report_to_tune else [],
        ),
    )
    try:
        trainer.fit()
    except ray.train.ControllerError as error:
        if type(error.controller_failure).__name__ not in WORKER_GROUP_START_FAILURES:
            raise
        raise WorkersUnavailableError(unavailable_message(group, attempts=group.controller_failures + 1)) from error
    except ray.train.TrainingFailedError as error:
        if step_failure(out_dir) is None:
            raise
        raise DeterministicFailure(f"{step_name(request.name)}: {step_failure(out_dir)}") from error
    if step_failure(out_dir) is not None:
        raise DeterministicFailure(f"{step_name(request.name)}: {step_failure(out_dir)}")
    metrics_file = out_dir / STEP_METRICS
    metrics = json.loads(metrics_file.read_text())
    metrics_file.unlink()
    return metrics


def step_name(run_name: str) -> str:
    """`phase2` of `phase2-<trial id>`, `task_teacher` of `task_teacher-<key>`."""
    return run_name.rsplit("-", 1)[0]


def unavailable_message(group: WorkerGroup, attempts: int) -> str:
    """Why a worker group did not start, in terms of the resources settings."""
    asked = group.worker_resources()

    def amounts(resources: dict[str, float]) -> str:
        return ", ".join(f"{resources.get(name, 0.0):g} {name}" for name in asked)

    return (
        f"resources: {group.workers} worker(s) of {amounts(asked)} each could not start "
        f"(worker_start_timeout_s {group.start_timeout_s:g}s, {attempts} attempt(s)); "
        f"the cluster has {amounts(ray.cluster_resources())} in all, {amounts(ray.available_resources())} free now, "
        "and each worker's resources must be free on one node"
    )


_call_on_cpu = ray.remote(call_with_threads)
_call_on_gpu = ray.remote(max_calls=1)(call_with_threads)


def run_task(function: Callable[..., Any], *args: Any, group: WorkerGroup) -> Any:
    """`function(*args)` in a Ray task holding one worker's resources (a step without training)."""
    task = (_call_on_gpu if group.use_gpu else _call_on_cpu).options(**_task_resources(group))
    return ray.get(task.remote(group.threads, function, *args))


def run_untrained(step: Callable[..., dict[str, Any]], out_dir: Path, *, group: WorkerGroup) -> dict[str, Any]:
    """A step without a training loop (no checkpoints, one process) in a Ray task."""
    return run_task(build_untrained, step, out_dir, group=group)
