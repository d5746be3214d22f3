"""Running one step of the method on Ray: a training phase on its workers, anything else in a task.

A training step is `step(out_dir, hooks) -> metrics`; rank 0 writes `out_dir`, which must be on
storage every node sees. `run_training` runs it

  - on one worker (`workers_per_trial: 1`) in a Ray task holding that worker's CPUs/GPU. Ray keeps
    idle task workers and reuses them, so such a phase starts in a process that already imported
    torch and the method, where a `TorchTrainer` starts a controller and a worker group, each a new
    Python process, for every phase (bench/ray_fixed_cost.py compares the two);
  - on several workers in a `TorchTrainer` (DDP over gloo on CPU, NCCL on GPU).

Either way every evaluation's checkpoint is kept, so a worker that died is started again
(`worker_restarts` times at most) and resumes from it, and so does a later run with the same name
(a retried trial, a resumed sweep); with `report_to_tune` each evaluation is also a Tune result of
the calling trial, for its scheduler. A worker that cannot start within `worker_start_timeout_s`
fails with a `WorkersUnavailableError` naming the resources it asked for, instead of hanging.

A step that raised a deterministic error (see `failures`) is not started again: the run ends in a
`DeterministicFailure` with its reason. (Ray Train restarts a worker group whatever failed, so
there the reason is left in `out_dir`, where the restarted workers find it and stop at once.)
"""

from __future__ import annotations

import json
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from functools import partial
from typing import Any, Callable, Iterator

import ray
import ray.train
from ray import tune
from ray.exceptions import RayError
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from bistil_ray.method.hooks import LocalHooks, TrainHooks
from bistil_ray.orchestration.failures import (
    DeterministicFailure,
    is_deterministic,
    one_line,
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
STEP_SECONDS = "step_seconds"  # the step's own time in its worker: no start-up, no shut-down

TrainStep = Callable[[Path, TrainHooks], dict[str, Any]]
ReportToTune = Callable[[dict[str, Any]], dict[str, Any]]  # an evaluation's metrics -> what to add

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

    @property
    def threads(self) -> int:
        """Torch threads of a worker: one per CPU it holds, at least one."""
        return max(1, int(self.cpus_per_worker))

    def worker_resources(self) -> dict[str, float]:
        return {"CPU": self.cpus_per_worker, **({"GPU": self.gpus_per_worker} if self.use_gpu else {})}


def run_training(step: TrainStep, out_dir: Path, *, group: WorkerGroup, **options: Any) -> dict[str, Any]:
    """Run a training step on `group` (`train_in_task` for one worker, else `train_data_parallel`,
    which take the same `options`); returns rank 0's metrics and its `STEP_SECONDS`."""
    train = train_in_task if group.workers == 1 else train_data_parallel
    return train(step, out_dir, group=group, **options)


# --- one worker: a Ray task ----------------------------------------------------------------------

STARTED, EVALUATION, RESULT = "started", "evaluation", "result"


def _pass_on(progress: Progress | None, metrics: TrialMetrics | None, evaluations: queue.Queue, evaluation: dict) -> None:
    if progress is not None:
        progress.update(step=evaluation.get("step"))
    if metrics is not None:
        metrics.training_progress(evaluation)
    evaluations.put(evaluation)


def _train_here(work: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The task: yields {STARTED}, {EVALUATION: metrics} for each evaluation, then {RESULT: metrics}.
    The step trains in a thread so that its evaluations reach the trial while it trains."""
    import torch

    torch.set_num_threads(work["threads"])  # a reused worker keeps the count of whatever ran before
    yield {STARTED: True}
    evaluations: queue.Queue = queue.Queue()
    hooks = LocalHooks(work["checkpoint_dir"], log=partial(_pass_on, work["progress"], work["metrics"], evaluations))
    outcome: dict[str, Any] = {}

    def train() -> None:
        started = time.perf_counter()
        try:
            outcome[RESULT] = {**work["step"](work["out_dir"], hooks), STEP_SECONDS: time.perf_counter() - started}
        except BaseException as error:  # re-raised in the task below
            outcome["error"] = error
        finally:
            evaluations.put(None)

    threading.Thread(target=train, name="bistil-step", daemon=True).start()
    while (evaluation := evaluations.get()) is not None:
        yield {EVALUATION: evaluation}
    if "error" in outcome:
        raise outcome["error"]
    yield {RESULT: outcome[RESULT]}


# A GPU task's process ends with the task (max_calls=1): a reused process would keep the CUDA
# context, and the device, of the task before.
_train_on_cpu = ray.remote(max_retries=0)(_train_here)
_train_on_gpu = ray.remote(max_retries=0, max_calls=1)(_train_here)


def train_in_task(
    step: TrainStep,
    out_dir: Path,
    *,
    name: str,
    runs_dir: Path,
    group: WorkerGroup,
    progress: Progress | None = None,
    metrics: TrialMetrics | None = None,
    report_to_tune: ReportToTune | None = None,
) -> dict[str, Any]:
    """`run_training` on one worker: a Ray task, its checkpoint kept in `runs_dir/name`. With
    `report_to_tune`, each evaluation, extended by it, is also a Tune result of the calling trial."""
    if group.workers != 1:
        raise ValueError(f"train_in_task: one worker, not {group.workers}")
    run_dir = Path(runs_dir) / name
    work = {
        "step": step,
        "out_dir": Path(out_dir),
        "checkpoint_dir": run_dir / "checkpoint",
        "progress": progress,
        "metrics": metrics,
        "threads": group.threads,
    }
    remote = (_train_on_gpu if group.use_gpu else _train_on_cpu).options(**_task_resources(group))
    for attempt in range(group.worker_restarts + 1):
        try:
            result = _follow(remote.remote(work), group, report_to_tune)
            break
        except RayError as error:  # the task's own exception, or its process or node lost
            if is_deterministic(error):
                raise DeterministicFailure(f"{step_name(name)}: {one_line(error)}") from error
            if attempt == group.worker_restarts:
                raise
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


def _follow(task: ray.ObjectRefGenerator, group: WorkerGroup, report_to_tune: ReportToTune | None) -> dict[str, Any]:
    """The task's result; its evaluations, extended by `report_to_tune`, reported to Tune as they come."""
    started, _ = ray.wait([task], timeout=group.start_timeout_s)
    if not started:
        ray.cancel(task, force=True)
        raise WorkersUnavailableError(unavailable_message(group, attempts=1))
    for reference in task:
        item = ray.get(reference)
        if EVALUATION in item and report_to_tune is not None:
            tune.report({**item[EVALUATION], **report_to_tune(item[EVALUATION])})
        if RESULT in item:
            return item[RESULT]
    raise RuntimeError("the training task ended without its result")


def _task_resources(group: WorkerGroup) -> dict[str, Any]:
    return {
        "num_cpus": group.cpus_per_worker,
        "num_gpus": group.gpus_per_worker if group.use_gpu else 0,
        # Not inside the trial's placement group, which holds only its trial_driver slot.
        "scheduling_strategy": "DEFAULT",
    }


# --- several workers: Ray Train --------------------------------------------------------------------


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
    started = time.perf_counter()
    try:
        metrics = work["step"](work["out_dir"], hooks)
    except Exception as error:
        if is_deterministic(error):
            record_step_failure(work["out_dir"], error)
        raise
    if ray.train.get_context().get_world_rank() == 0:
        metrics = {**metrics, STEP_SECONDS: time.perf_counter() - started}
        (work["out_dir"] / STEP_METRICS).write_text(json.dumps(metrics, default=str))


def train_data_parallel(
    step: TrainStep,
    out_dir: Path,
    *,
    name: str,
    runs_dir: Path,
    group: WorkerGroup,
    progress: Progress | None = None,
    metrics: TrialMetrics | None = None,
    report_to_tune: ReportToTune | None = None,
) -> dict[str, Any]:
    """`run_training` in a `TorchTrainer` of `group.workers` workers (any number, one included)."""
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
        raise WorkersUnavailableError(unavailable_message(group, attempts=group.controller_failures + 1)) from error
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


def _call(threads: int, function: Callable[..., Any], *args: Any) -> Any:
    import torch

    torch.set_num_threads(threads)
    return function(*args)


_call_on_cpu = ray.remote(_call)
_call_on_gpu = ray.remote(max_calls=1)(_call)


def run_task(function: Callable[..., Any], *args: Any, group: WorkerGroup) -> Any:
    """`function(*args)` in a Ray task holding one worker's resources (a step without training)."""
    task = (_call_on_gpu if group.use_gpu else _call_on_cpu).options(**_task_resources(group))
    return ray.get(task.remote(group.threads, function, *args))


def _untrained(step: TrainStep, out_dir: Path) -> dict[str, Any]:
    return step(out_dir, LocalHooks())


def run_untrained(step: TrainStep, out_dir: Path, *, group: WorkerGroup) -> dict[str, Any]:
    """A step without a training loop (no checkpoints, one process) in a Ray task."""
    return run_task(_untrained, step, Path(out_dir), group=group)
