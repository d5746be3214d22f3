"""One trial: one language pair with one set of searched values, as a plain Tune function.

It executes the step graph of `bistil_ray.steps` on Ray: the shared steps (task teacher, vocabulary,
phase-1 student) are artifacts in the store under `--storage`, built once per key and reused by every
trial, pair, later sweep and single run that needs them; then this trial's phase-2 student, its
evaluation, and `tune.report`.

The trial function holds only a `trial_driver` slot; its steps run in Ray tasks that hold the
CPUs/GPUs, and a training phase of several workers in a `TorchTrainer` (`train_runner`). The method
comes from `context.pipeline` (the `bistil_ray.pipeline` module; tests pass fakes that satisfy the
same `steps.Pipeline`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import ray
from ray import tune

from bistil_ray.artifacts import Artifact, ArtifactStore, artifact_key
from bistil_ray.atomic import atomic_directory, atomic_write_text, remove_dead_staging
from bistil_ray.config import RunConfig
from bistil_ray.model_card import write_model_card
from bistil_ray.orchestration.failures import DeterministicFailure, is_deterministic, one_line
from bistil_ray.orchestration.live_view import Progress, board_name
from bistil_ray.orchestration.metrics import TrialMetrics
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.results_schema import artifact_columns
from bistil_ray.orchestration.search_space import DIMENSIONS
from bistil_ray.orchestration.sweep_config import SweepConfig
from bistil_ray.orchestration.train_runner import STEP_SECONDS, TrainStep, WorkerGroup, run_task, run_training, run_untrained
from bistil_ray.steps import PHASE2_STUDENT, SHARED_STEPS, TASK_TEACHER, Fingerprints, Pipeline, Step, StepCall, step_inputs

OBJECTIVE = "objective_score"
SCHEDULER_TIME = "phase2_step"
# objective -> the key holding it, the same in evaluate_student's result and phase 2's evaluation metrics
SCORE_KEYS = {"source_validation": "source_score", "target_validation": "target_validation_score"}


def evaluate_on_worker(pipeline: Pipeline, run: RunConfig, student_dir: Path, teacher_dir: Path, teacher_scores: dict) -> dict:
    """The evaluation step, in a Ray task that holds a worker's resources (its GPU, if it has one); the
    student's model card is written from its result."""
    result = pipeline.evaluate_student(pipeline.resolve_inputs(run), student_dir, teacher_dir, teacher_scores)
    write_model_card(student_dir, run, result)
    return result


def _for_scheduler(score_key: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """What a phase-2 evaluation adds to its report so that ASHA can compare trials by it."""
    return {OBJECTIVE: metrics[score_key], SCHEDULER_TIME: metrics["step"]}


# --- the trial -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialContext:
    sweep: SweepConfig
    paths: SweepPaths
    fingerprints: Fingerprints
    pipeline: Pipeline
    task_teacher_group: WorkerGroup  # wider than a trial's: see driver.task_teacher_group


@dataclass(frozen=True)
class _Trial:
    context: TrialContext
    trial_id: str
    run: RunConfig
    group: WorkerGroup
    progress: Progress
    metrics: TrialMetrics
    store: ArtifactStore

    def enter(self, phase: str, total_steps: int | None = None) -> None:
        self.progress.phase(phase, total_steps)
        self.metrics.enter(phase)

    def artifact(self, kind: str, inputs: dict[str, Any], build: Callable[[Path], dict[str, Any]]) -> Artifact:
        artifact = self.store.get_or_build(kind, inputs, build)
        self.metrics.artifact_used(kind, artifact.cache_hit)
        return artifact

    def shared(self, step: Step, keys: dict[str, str], paths: dict[str, Path]) -> Artifact:
        """`step`'s artifact: built on Ray (its training on Train workers) unless the store has it."""
        self.enter(step.label, step.training_steps(self.run))
        inputs = step_inputs(step, self.run, self.context.fingerprints, keys)
        call = StepCall(self.context.pipeline, step, self.run, {kind: paths[kind] for kind in step.upstream})
        if step.trains:
            group = self.context.task_teacher_group if step is TASK_TEACHER else self.group
            build = partial(
                run_training,
                call,
                name=f"{step.kind}-{artifact_key(inputs)}",
                runs_dir=self.context.paths.artifact_train_runs,
                group=group,
                progress=self.progress,
                metrics=self.metrics,
            )
        else:
            build = partial(run_untrained, call, group=self.group)
        artifact = self.artifact(step.kind, inputs, build)
        keys[step.kind], paths[step.kind] = artifact.key, artifact.path
        return artifact

    def phase2_student(self, step: TrainStep) -> tuple[Path, float | None]:
        """This trial's student, trained unless a previous attempt of the trial published it, and
        the training step's own seconds (None when it was published before)."""
        final = self.context.paths.students / self.trial_id
        if final.is_dir():
            return final, None
        objective = self.context.sweep.objective.score
        use_scheduler = self.context.sweep.scheduler != "none"
        remove_dead_staging(final)  # an earlier attempt of this trial, killed while training
        with atomic_directory(final) as staging:
            metrics = run_training(
                step,
                staging,
                name=f"phase2-{self.trial_id}",
                runs_dir=self.context.paths.train_runs,
                group=self.group,
                progress=self.progress,
                metrics=self.metrics,
                report_to_tune=partial(_for_scheduler, SCORE_KEYS[objective]) if use_scheduler else None,
            )
        return final, metrics[STEP_SECONDS]


def run_trial(params: dict[str, Any], context: TrialContext) -> None:
    """Run one trial and report its result. A failure that a retry cannot change (see `failures`)
    is reported as the trial's result, with its reason, so that Tune does not retry it; any other
    failure is raised, for Tune to retry the trial."""
    trial_id = tune.get_context().get_trial_id()
    recorded = context.paths.trial_result(trial_id)
    if recorded.exists():
        # Finished before the driver died, after Tune's last experiment checkpoint: report it again.
        tune.report(json.loads(recorded.read_text()))
        return
    try:
        result = _trial_result(params, context, trial_id)
    except Exception as error:
        if not is_deterministic(error):
            raise
        # Tune insists on the searched metrics in every result; None marks them as not measured.
        result = {OBJECTIVE: None, context.sweep.objective.tradeoff: None, "error": one_line(error)}
    atomic_write_text(recorded, json.dumps(result, default=float))  # float: numpy scalars
    tune.report(result)


def _trial_result(params: dict[str, Any], context: TrialContext, trial_id: str) -> dict[str, Any]:
    started = time.perf_counter()
    sweep, pipeline = context.sweep, context.pipeline
    run = sweep.run_config(params["target_lang"], {name: params[name] for name in DIMENSIONS})
    group = WorkerGroup.from_resources(sweep.resources)
    progress = Progress(board_name(sweep.name), trial_id)
    metrics = TrialMetrics(sweep.name, f"{run.source_lang}-{run.target_lang}", trial_id)
    trial = _Trial(context, trial_id, run, group, progress, metrics, ArtifactStore(context.paths.artifacts))

    keys: dict[str, str] = {}
    paths: dict[str, Path] = {}
    artifacts = {step.kind: trial.shared(step, keys, paths) for step in SHARED_STEPS}
    phase2_steps = PHASE2_STUDENT.training_steps(run)
    trial.enter(PHASE2_STUDENT.label, phase2_steps)
    phase2_started = time.perf_counter()
    student, phase2_train_seconds = trial.phase2_student(
        StepCall(pipeline, PHASE2_STUDENT, run, {kind: paths[kind] for kind in PHASE2_STUDENT.upstream})
    )
    phase2_seconds = time.perf_counter() - phase2_started
    trial.enter("evaluation")
    teacher_scores = artifacts["teacher_scores"].metrics
    evaluation_started = time.perf_counter()
    evaluation = run_task(evaluate_on_worker, pipeline, run, student, paths["task_teacher"], teacher_scores, group=group)
    evaluation_seconds = time.perf_counter() - evaluation_started
    objective_key = SCORE_KEYS[sweep.objective.score]
    if evaluation.get(objective_key) is None:
        raise DeterministicFailure(f"objective.score {sweep.objective.score}: the evaluation measured no {objective_key}")

    result = {
        **evaluation,
        OBJECTIVE: evaluation[objective_key],
        SCHEDULER_TIME: phase2_steps,
        **{name: value for step in SHARED_STEPS for name, value in artifact_columns(step, artifacts[step.kind]).items()},
        "phase2_seconds": phase2_seconds,
        "phase2_train_seconds": phase2_train_seconds,
        "evaluation_seconds": evaluation_seconds,
        "trial_seconds": time.perf_counter() - started,
        "student_path": str(student),
        "node": ray.get_runtime_context().get_node_id(),
        "completed": True,
    }
    trial.enter("done")
    return result
