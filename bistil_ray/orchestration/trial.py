"""One trial: one language pair with one set of searched values, as a plain Tune function.

    task teacher ─┐ (artifacts: built once per key, reused by every trial that needs them)
    vocabulary ───┼─► phase-1 student ─► phase 2 (this trial's student) ─► evaluation ─► tune.report
                  └───────────────────────────────┘

The trial function holds only a `trial_driver` slot; its training phases run in `TorchTrainer`s and
its other steps in Ray tasks that hold the CPUs/GPUs. The method comes from `context.pipeline` (the
`bistil_ray.pipeline` module; tests pass fakes with the same functions).
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

from bistil_ray.atomic import atomic_directory, atomic_write_text, remove_dead_staging
from bistil_ray.config import RunConfig
from bistil_ray.data.word_frequencies import fingerprint as word_lists_fingerprint
from bistil_ray.method.hooks import TrainHooks
from bistil_ray.orchestration.artifacts import Artifact, ArtifactStore, artifact_key
from bistil_ray.orchestration.failures import DeterministicFailure, is_deterministic, one_line
from bistil_ray.orchestration.live_view import Progress, board_name
from bistil_ray.orchestration.metrics import TrialMetrics
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.search_space import DIMENSIONS
from bistil_ray.orchestration.sweep_config import SweepConfig
from bistil_ray.orchestration.train_runner import TrainStep, WorkerGroup, run_task, run_training

OBJECTIVE = "objective_score"
SCHEDULER_TIME = "phase2_step"
# objective -> the key holding it in evaluate_student's result / in phase-2 evaluation metrics
FINAL_SCORE_KEYS = {"source_validation": "source_score", "target_validation": "target_validation_score"}
PHASE2_SCORE_KEYS = {"source_validation": "source_accuracy", "target_validation": "target_validation_accuracy"}


@dataclass(frozen=True)
class Fingerprints:
    """Content hashes of the sweep's inputs, computed once by the driver, part of artifact keys."""

    teacher: str
    task: str
    corpora: dict[str, str]  # language -> fingerprint of its phase-1 text

    @classmethod
    def of(cls, sweep: SweepConfig) -> "Fingerprints":
        # Imported here: they bring transformers and datasets, which only the driver needs for this.
        from bistil_ray.assets.teachers import teacher_fingerprint
        from bistil_ray.data.corpora import fingerprint_corpus
        from bistil_ray.data.tasks import fingerprint_task

        languages = [sweep.source_lang, *sweep.target_langs]
        return cls(
            teacher=teacher_fingerprint(sweep.teacher, trust_remote_code=sweep.trust_remote_code),
            task=fingerprint_task(sweep.task, sweep.source_lang),
            corpora={lang: fingerprint_corpus(sweep.task, sweep.corpora, lang) for lang in languages},
        )


def task_teacher_inputs(run: RunConfig, prints: Fingerprints) -> dict[str, Any]:
    return {
        "teacher": prints.teacher,
        "task": prints.task,
        "source_lang": run.source_lang,
        "task_teacher": run.task_teacher.model_dump(mode="json"),
    }


def vocabulary_inputs(run: RunConfig, prints: Fingerprints) -> dict[str, Any]:
    return {
        "teacher": prints.teacher,
        "task": prints.task,  # the source task's training text counts towards the vocabulary
        "languages": [run.source_lang, run.target_lang],
        "corpora": [prints.corpora[run.source_lang], prints.corpora[run.target_lang]],
        "vocabulary": run.vocabulary.model_dump(mode="json"),
        "word_lists": word_lists_fingerprint() if run.vocabulary.word_frequencies else None,
    }


def phase1_inputs(run: RunConfig, prints: Fingerprints, vocabulary_key: str) -> dict[str, Any]:
    return {
        "teacher": prints.teacher,
        "vocabulary": vocabulary_key,
        "languages": [run.source_lang, run.target_lang],
        "corpora": [prints.corpora[run.source_lang], prints.corpora[run.target_lang]],
        "student": run.student.model_dump(mode="json"),
        "phase1": run.phase1.model_dump(mode="json"),
    }


# --- the steps, as they run on workers (module functions: they pickle by reference) --------------


def _task_teacher_step(pipeline: Any, run: RunConfig, out_dir: Path, hooks: TrainHooks) -> dict:
    return pipeline.build_task_teacher(pipeline.resolve_inputs(run), run.task_teacher, out_dir, hooks)


def _vocabulary_step(pipeline: Any, run: RunConfig, out_dir: Path) -> dict:
    return pipeline.build_vocabulary(pipeline.resolve_inputs(run), run.vocabulary, out_dir)


def _phase1_step(pipeline: Any, run: RunConfig, vocab_dir: Path, out_dir: Path, hooks: TrainHooks) -> dict:
    return pipeline.build_phase1_student(
        pipeline.resolve_inputs(run), vocab_dir, run.student, run.phase1, out_dir, hooks
    )


def _phase2_step(
    pipeline: Any, run: RunConfig, phase1: Path, teacher: Path, vocab: Path, out_dir: Path, hooks: TrainHooks
) -> dict:
    return pipeline.run_phase2(pipeline.resolve_inputs(run), phase1, teacher, vocab, run.phase2, out_dir, hooks)


def _evaluation_step(pipeline: Any, run: RunConfig, student_dir: Path, teacher_dir: Path) -> dict:
    return pipeline.evaluate_student(pipeline.resolve_inputs(run), student_dir, teacher_dir)


def _for_scheduler(score_key: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """What a phase-2 evaluation adds to its report so that ASHA can compare trials by it."""
    return {OBJECTIVE: metrics[score_key], SCHEDULER_TIME: metrics["step"]}


# --- the trial -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialContext:
    sweep: SweepConfig
    paths: SweepPaths
    fingerprints: Fingerprints
    pipeline: Any  # bistil_ray.pipeline, or an object with the same functions
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

    def trained_artifact(
        self, kind: str, inputs: dict[str, Any], step: TrainStep, group: WorkerGroup | None = None
    ) -> Artifact:
        name = f"{kind}-{artifact_key(inputs)}"
        runs_dir = self.context.paths.artifact_train_runs
        build = partial(
            run_training,
            step,
            name=name,
            runs_dir=runs_dir,
            group=group or self.group,
            progress=self.progress,
            metrics=self.metrics,
        )
        return self.artifact(kind, inputs, build)

    def phase2_student(self, step: TrainStep) -> Path:
        """This trial's student, trained unless a previous attempt of the trial published it."""
        final = self.context.paths.students / self.trial_id
        if final.is_dir():
            return final
        objective = self.context.sweep.objective.score
        use_scheduler = self.context.sweep.scheduler != "none"
        remove_dead_staging(final)  # an earlier attempt of this trial, killed while training
        with atomic_directory(final) as staging:
            run_training(
                step,
                staging,
                name=f"phase2-{self.trial_id}",
                runs_dir=self.context.paths.train_runs,
                group=self.group,
                progress=self.progress,
                metrics=self.metrics,
                report_to_tune=partial(_for_scheduler, PHASE2_SCORE_KEYS[objective]) if use_scheduler else None,
            )
        return final


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
    sweep, pipeline, prints = context.sweep, context.pipeline, context.fingerprints
    run = sweep.run_config(params["target_lang"], {name: params[name] for name in DIMENSIONS})
    group = WorkerGroup.from_resources(sweep.resources)
    progress = Progress(board_name(sweep.name), trial_id)
    metrics = TrialMetrics(sweep.name, f"{run.source_lang}-{run.target_lang}", trial_id)
    trial = _Trial(context, trial_id, run, group, progress, metrics, ArtifactStore(context.paths.artifacts))

    trial.enter("task teacher", run.task_teacher.steps)
    teacher = trial.trained_artifact(
        "task_teacher",
        task_teacher_inputs(run, prints),
        partial(_task_teacher_step, pipeline, run),
        group=context.task_teacher_group,
    )
    trial.enter("vocabulary")
    vocab = trial.artifact(
        "vocabulary", vocabulary_inputs(run, prints), partial(run_task, _vocabulary_step, pipeline, run, group=group)
    )
    trial.enter("phase 1", run.phase1.steps)
    phase1 = trial.trained_artifact(
        "phase1_student", phase1_inputs(run, prints, vocab.key), partial(_phase1_step, pipeline, run, vocab.path)
    )
    phase2_steps = run.phase2.full_steps + run.phase2.sparse_steps
    trial.enter("phase 2", phase2_steps)
    phase2_started = time.perf_counter()
    student = trial.phase2_student(partial(_phase2_step, pipeline, run, phase1.path, teacher.path, vocab.path))
    phase2_seconds = time.perf_counter() - phase2_started
    trial.enter("evaluation")
    evaluation = run_task(_evaluation_step, pipeline, run, student, teacher.path, group=group)
    objective_key = FINAL_SCORE_KEYS[sweep.objective.score]
    if evaluation.get(objective_key) is None:
        raise DeterministicFailure(f"objective.score {sweep.objective.score}: the evaluation measured no {objective_key}")

    result = {
        **evaluation,
        OBJECTIVE: evaluation[objective_key],
        SCHEDULER_TIME: phase2_steps,
        "task_teacher_cache_hit": teacher.cache_hit,
        "vocab_cache_hit": vocab.cache_hit,
        "phase1_cache_hit": phase1.cache_hit,
        "task_teacher_key": teacher.key,
        "vocab_key": vocab.key,
        "phase1_key": phase1.key,
        "task_teacher_build_seconds": teacher.build_seconds,
        "vocab_build_seconds": vocab.build_seconds,
        "phase1_build_seconds": phase1.build_seconds,
        "task_teacher_seconds": teacher.seconds,
        "vocab_seconds": vocab.seconds,
        "phase1_seconds": phase1.seconds,
        "phase2_seconds": phase2_seconds,
        "trial_seconds": time.perf_counter() - started,
        "student_path": str(student),
        "node": ray.get_runtime_context().get_node_id(),
        "completed": True,
    }
    trial.enter("done")
    return result
