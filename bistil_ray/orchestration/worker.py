"""What runs inside a Ray worker: a training step in a Ray task (`train_here`), in a Ray Train worker
(`train_loop_per_worker`), or a step without training (`call_with_threads`). The driver side, which
starts these and follows them, is `train_runner`.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import ray
import ray.train
from ray.train import Checkpoint

from bistil_ray.method.hooks import LocalHooks
from bistil_ray.orchestration.failures import is_deterministic, record_step_failure, step_failure
from bistil_ray.orchestration.live_view import Progress
from bistil_ray.orchestration.metrics import TrialMetrics
from bistil_ray.orchestration.requests import TrainRequest
from bistil_ray.steps import STEP_SECONDS

STEP_METRICS = "bistil_step_metrics.json"  # rank 0's metrics, left in out_dir by a Ray Train run


# --- one worker: the body of a Ray task ------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """The task holds its resources and has begun."""


@dataclass(frozen=True)
class Evaluated:
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Finished:
    metrics: dict[str, Any]  # the step's, with its STEP_SECONDS


def _pass_on(progress: Progress | None, metrics: TrialMetrics | None, evaluations: queue.Queue, evaluation: dict) -> None:
    if progress is not None:
        progress.update(step=evaluation.get("step"))
    if metrics is not None:
        metrics.training_progress(evaluation)
    evaluations.put(evaluation)


def train_here(request: TrainRequest) -> Iterator[Started | Evaluated | Finished]:
    """The task: yields `Started`, an `Evaluated` per evaluation, then `Finished`. The step trains in
    a thread so that its evaluations reach the trial while it trains."""
    import torch

    torch.set_num_threads(request.group.threads)  # a reused worker keeps the count of whatever ran before
    yield Started()
    evaluations: queue.Queue = queue.Queue()
    log = lambda evaluation: _pass_on(request.progress, request.metrics, evaluations, evaluation)  # noqa: E731
    hooks = LocalHooks(request.checkpoints / "checkpoint", log=log)
    outcome: dict[str, Any] = {}

    def train() -> None:
        started = time.perf_counter()
        try:
            outcome["result"] = {**request.step(request.out_dir, hooks), STEP_SECONDS: time.perf_counter() - started}
        except BaseException as error:  # re-raised in the task below
            outcome["error"] = error
        finally:
            evaluations.put(None)

    threading.Thread(target=train, name="bistil-step", daemon=True).start()
    while (evaluation := evaluations.get()) is not None:
        yield Evaluated(evaluation)
    if "error" in outcome:
        raise outcome["error"]
    yield Finished(outcome["result"])


# --- several workers: Ray Train ----------------------------------------------------------------------


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


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker function; `config["request"]` is an object reference to the `TrainRequest`."""
    request: TrainRequest = ray.get(config["request"])
    if step_failure(request.out_dir) is not None:
        return  # an earlier attempt failed in a way that a restart cannot change
    hooks = RayTrainHooks(progress=request.progress, metrics=request.metrics, extra_metrics=request.report_to_tune)
    started = time.perf_counter()
    try:
        metrics = request.step(request.out_dir, hooks)
    except Exception as error:
        if is_deterministic(error):
            record_step_failure(request.out_dir, error)
        raise
    if ray.train.get_context().get_world_rank() == 0:
        metrics = {**metrics, STEP_SECONDS: time.perf_counter() - started}
        (request.out_dir / STEP_METRICS).write_text(json.dumps(metrics, default=str))


# --- a step without training ----------------------------------------------------------------------


def call_with_threads(threads: int, function: Callable[..., Any], *args: Any) -> Any:
    import torch

    torch.set_num_threads(threads)
    return function(*args)


def build_untrained(step: Callable[[Path, LocalHooks], dict[str, Any]], out_dir: Path) -> dict[str, Any]:
    """A step without a training loop: no checkpoints, one process."""
    return step(out_dir, LocalHooks())
