"""One trial: one language pair with one set of searched values, as a plain Tune function.

It executes the step graph of `bistil_ray.steps` with the one executor (`bistil_ray.executor`), on
Ray (`RayBackend`): the shared steps (task teacher, vocabulary, phase-1 student, the teacher's
scores) are artifacts in the store under `--storage`, built once per key and reused by every trial,
pair, later sweep and single run that needs them; this trial's phase-2 student is published at
`students/<trial_id>`; then its evaluation, and `tune.report`.

The trial function holds only a `trial_driver` slot; its steps run in Ray tasks that hold the
CPUs/GPUs, and a training phase of several workers in a `TorchTrainer` (`train_runner`). The method
comes from `context.pipeline` (the `bistil_ray.pipeline` module; tests pass fakes that satisfy the
same `steps.Pipeline`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from bistil_ray.artifacts import ArtifactStore
from bistil_ray.atomic import atomic_write_text
from bistil_ray.config import DIMENSIONS, RunConfig
from bistil_ray.executor import BuildRequest, StepGraph
from bistil_ray.model_card import write_model_card
from bistil_ray.output_paths import DiskSpaceError
from bistil_ray.orchestration.failures import DeterministicFailure, is_deterministic, one_line
from bistil_ray.orchestration.full_disk import record_full_disk
from bistil_ray.orchestration.live_view import Progress, board_name
from bistil_ray.orchestration.metrics import TrialMetrics
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.requests import TrainRequest, WorkerGroup
from bistil_ray.orchestration.sweep_config import SweepConfig
from bistil_ray.orchestration.train_runner import run_task, run_training, run_untrained
from bistil_ray.results_schema import schema_checked, step_columns
from bistil_ray.steps import PHASE2_STUDENT, SHARED_STEPS, STEPS, TASK_TEACHER, Fingerprints, Pipeline

OBJECTIVE = "objective_score"
SCHEDULER_TIME = "phase2_step"
# objective -> the key holding it, the same in evaluate_student's result and phase 2's evaluation metrics
SCORE_KEYS = {"source_validation": "source_score", "target_validation": "target_validation_score"}


@dataclass(frozen=True)
class Evaluation:
    """A trial's student to evaluate beside its task teacher, as the evaluation task receives it."""

    pipeline: Pipeline
    run: RunConfig
    student_dir: Path
    teacher_dir: Path
    teacher_scores: dict[str, Any]  # the teacher_scores artifact's metrics


def evaluate_on_worker(evaluation: Evaluation) -> dict[str, Any]:
    """The evaluation step, in a Ray task that holds a worker's resources (its GPU, if it has one); the
    student's model card is written from its result."""
    pipeline, run = evaluation.pipeline, evaluation.run
    inputs = pipeline.resolve_inputs(run)
    result = pipeline.evaluate_student(inputs, evaluation.student_dir, evaluation.teacher_dir, evaluation.teacher_scores)
    write_model_card(evaluation.student_dir, run, result)
    return result


@dataclass(frozen=True)
class SchedulerReport:
    """What a phase-2 evaluation adds to its Tune report so that ASHA can compare trials by it."""

    score_key: str  # SCORE_KEYS[objective.score]

    def __call__(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {OBJECTIVE: metrics[self.score_key], SCHEDULER_TIME: metrics["step"]}


# --- the trial -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialContext:
    sweep: SweepConfig
    paths: SweepPaths
    fingerprints: Fingerprints
    pipeline: Pipeline
    task_teacher_group: WorkerGroup  # wider than a trial's: see driver.task_teacher_group


@dataclass(frozen=True)
class RayBackend:
    """The executor's back-end for a trial: a training step on Ray Train's or a Ray task's workers,
    with this trial's progress line and metrics; any other step in a Ray task."""

    group: WorkerGroup
    task_teacher_group: WorkerGroup
    progress: Progress
    metrics: TrialMetrics
    phase2_report: SchedulerReport | None  # phase 2's evaluations, as Tune results for the scheduler

    def build(self, request: BuildRequest) -> dict[str, Any]:
        step = request.call.step
        if not step.trains:
            return run_untrained(request.call, request.out_dir, group=self.group)
        return run_training(
            TrainRequest(
                request.call,
                request.out_dir,
                request.checkpoints,
                request.name,
                group=self.task_teacher_group if step is TASK_TEACHER else self.group,
                progress=self.progress,
                metrics=self.metrics,
                report_to_tune=self.phase2_report if step is PHASE2_STUDENT else None,
            )
        )


def run_trial(params: dict[str, Any], context: TrialContext) -> None:
    """Run one trial and report its result. A failure that a retry cannot change (see `failures`)
    is reported as the trial's result, with its reason, so that Tune does not retry it; any other
    failure is raised: Tune retries the trial, and a trial that still fails is run again by --resume.
    Too little disk space to start a step is raised too, and stops the sweep (`full_disk`)."""
    trial_id = tune.get_context().get_trial_id()
    recorded = context.paths.trial_result(trial_id)
    if recorded.exists():
        # Finished before the driver died, after Tune's last experiment checkpoint: report it again.
        tune.report(json.loads(recorded.read_text()))
        return
    try:
        result = _trial_result(params, context, trial_id)
    except DiskSpaceError as error:
        # Not the trial's result: once space is freed, --resume runs it again. The sweep stops here.
        record_full_disk(context.paths.disk_full, error)
        raise
    except Exception as error:
        if not is_deterministic(error):
            raise
        # Tune insists on the searched metrics in every result; None marks them as not measured.
        result = {OBJECTIVE: None, context.sweep.objective.tradeoff: None, "error": one_line(error)}
    atomic_write_text(recorded, json.dumps(result, default=float))  # float: numpy scalars
    tune.report(result)


def _trial_result(params: dict[str, Any], context: TrialContext, trial_id: str) -> dict[str, Any]:
    started = time.perf_counter()
    sweep = context.sweep
    run = sweep.run_config(params["target_lang"], {name: params[name] for name in DIMENSIONS})
    group = WorkerGroup.from_resources(sweep.resources)
    progress = Progress(board_name(sweep.name), trial_id)
    metrics = TrialMetrics(sweep.name, f"{run.source_lang}-{run.target_lang}", trial_id)
    score_key = SCORE_KEYS[sweep.objective.score]
    scheduler = SchedulerReport(score_key) if sweep.scheduler != "none" else None
    backend = RayBackend(group, context.task_teacher_group, progress, metrics, scheduler)
    graph = StepGraph(context.pipeline, run, context.fingerprints, ArtifactStore(context.paths.artifacts), backend)

    def enter(phase: str, total_steps: int | None = None) -> None:
        progress.phase(phase, total_steps)
        metrics.enter(phase)

    for step in SHARED_STEPS:
        enter(step.label, step.training_steps(run))
        metrics.artifact_used(step.kind, graph.shared(step).cache_hit)
    enter(PHASE2_STUDENT.label, PHASE2_STUDENT.training_steps(run))
    student = graph.placed(PHASE2_STUDENT, context.paths.students / trial_id)
    enter("evaluation")
    evaluation_started = time.perf_counter()
    teacher_scores = graph.built["teacher_scores"].metrics
    request = Evaluation(context.pipeline, run, student.path, graph.path("task_teacher"), teacher_scores)
    evaluation = run_task(evaluate_on_worker, request, group=group)
    evaluation_seconds = time.perf_counter() - evaluation_started
    if evaluation.get(score_key) is None:
        raise DeterministicFailure(f"objective.score {sweep.objective.score}: the evaluation measured no {score_key}")

    result = {
        **evaluation,
        OBJECTIVE: evaluation[score_key],
        SCHEDULER_TIME: PHASE2_STUDENT.training_steps(run),
        **{name: value for step in STEPS.values() for name, value in step_columns(step, graph.built[step.kind]).items()},
        "evaluation_seconds": evaluation_seconds,
        "trial_seconds": time.perf_counter() - started,
        "student_path": str(student.path),
        "node": ray.get_runtime_context().get_node_id(),
        "completed": True,
    }
    enter("done")
    return schema_checked(result)
