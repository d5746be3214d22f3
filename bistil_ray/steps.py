"""The steps of one language pair, as a graph: what each step builds, from what, and under which key.

    task_teacher ─┬────────────────────────► teacher_scores ────┐
                  └──────────────────┐                          ▼
    vocabulary ─► phase1_student ─► phase2_student ─► evaluate_student

A step's key is a hash of the run settings it reads (its config `sections`), the content
fingerprints of the files it reads (teacher weights, task data, phase-1 text) and the keys of the
steps it is built from. The steps shared between pairs and trials (`SHARED_STEPS`) are artifacts in
one `ArtifactStore`; the phase-2 student and its evaluation are each run's (or trial's) own. `bistil_ray.run` executes the
graph in one process; a sweep trial executes the same graph on Ray (`orchestration/trial.py`).
Both key with `step_inputs`, so a single run and a sweep on the same storage find each other's
artifacts, and an edited corpus file gives new keys in both. No Ray here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

from bistil_ray.config import (
    Phase1Config,
    Phase2Config,
    RunConfig,
    StudentConfig,
    StrictModel,
    TaskTeacherConfig,
    VocabularyConfig,
)
from bistil_ray.data.word_frequencies import fingerprint as word_lists_fingerprint
from bistil_ray.method.hooks import TrainHooks

if TYPE_CHECKING:  # transformers and datasets: not needed to key or plan a step
    from bistil_ray.inputs import Inputs


class Pipeline(Protocol):
    """The method, one function per step: `bistil_ray.pipeline`, or a test's fake of the same shape."""

    def resolve_inputs(self, run: RunConfig) -> Inputs: ...

    def build_task_teacher(self, inputs: Inputs, config: TaskTeacherConfig, out_dir: Path, hooks: TrainHooks) -> dict: ...

    def build_vocabulary(self, inputs: Inputs, config: VocabularyConfig, out_dir: Path) -> dict: ...

    def build_phase1_student(
        self, inputs: Inputs, vocab_dir: Path, student_config: StudentConfig, config: Phase1Config, out_dir: Path,
        hooks: TrainHooks,
    ) -> dict: ...  # fmt: skip

    def run_phase2(
        self, inputs: Inputs, phase1_dir: Path, task_teacher_dir: Path, vocab_dir: Path, config: Phase2Config,
        out_dir: Path, hooks: TrainHooks,
    ) -> dict: ...  # fmt: skip

    def score_task_teacher(self, inputs: Inputs, task_teacher_dir: Path, out_dir: Path) -> dict: ...

    def evaluate_student(self, inputs: Inputs, student_dir: Path, task_teacher_dir: Path, teacher_scores: dict) -> dict: ...


@dataclass(frozen=True)
class Fingerprints:
    """Content hashes of the files a run reads, computed once per run or sweep, part of step keys."""

    teacher: str
    task: str  # the source task's data
    corpora: dict[str, str]  # language -> fingerprint of its phase-1 text
    targets: dict[str, str]  # target language -> fingerprint of its evaluation data (test, validation)

    @classmethod
    def of(cls, config: RunConfig, target_langs: Iterable[str]) -> "Fingerprints":
        """`config`: a run or a sweep configuration (both have teacher, task, corpora, source_lang)."""
        # Imported here: they bring transformers and datasets, which keying needs only for this.
        from bistil_ray.assets.teachers import teacher_fingerprint
        from bistil_ray.data.corpora import fingerprint_corpus
        from bistil_ray.data.tasks import fingerprint_target, fingerprint_task

        targets = list(target_langs)
        return cls(
            teacher=teacher_fingerprint(config.teacher, trust_remote_code=config.trust_remote_code),
            task=fingerprint_task(config.task, config.source_lang),
            corpora={lang: fingerprint_corpus(config.task, config.corpora, lang) for lang in [config.source_lang, *targets]},
            targets={lang: fingerprint_target(config.task, config.source_lang, lang) for lang in targets},
        )


Build = Callable[[Pipeline, "Inputs", dict[str, Path], Path, TrainHooks], dict]


@dataclass(frozen=True)
class Step:
    kind: str  # also the artifact's folder: <store>/<kind>/<key>
    label: str  # for progress boards
    column: str  # prefix of its columns in trials.parquet: <column>_key, <column>_cache_hit, ...
    sections: tuple[str, ...]  # the RunConfig sections whose settings are part of the key
    languages: tuple[str, ...]  # "source", "target": the pair's sides it is for
    reads: tuple[str, ...]  # "task" (the source task's data), "corpora" (its languages' phase-1 text),
    # "target_data" (the target language's test and validation sets)
    upstream: tuple[str, ...]  # kinds of the steps it is built from; their keys are part of its key
    trains: bool  # a training loop: checkpoints, resumes, runs on data-parallel workers
    build: Build
    best: str | None = None  # a training step's metric for its best evaluation (its loop's best_metric)

    def training_steps(self, run: RunConfig) -> int | None:
        """Optimiser steps, for progress bars."""
        if not self.trains:
            return None
        section = settings_of(run, self.sections[-1])
        return section.full_steps + section.sparse_steps if isinstance(section, Phase2Config) else section.steps


def settings_of(run: RunConfig, section: str) -> StrictModel:
    """A section's settings as its step trains with them: a task teacher's with its method's own lr
    and steps (the other methods' settings are no part of its key)."""
    settings = getattr(run, section)
    return settings.resolved() if isinstance(settings, TaskTeacherConfig) else settings


def _build_task_teacher(pipeline: Pipeline, inputs: Inputs, upstream: dict[str, Path], out_dir: Path, hooks: TrainHooks) -> dict:
    return pipeline.build_task_teacher(inputs, inputs.run.task_teacher, out_dir, hooks)


def _build_vocabulary(pipeline: Pipeline, inputs: Inputs, upstream: dict[str, Path], out_dir: Path, hooks: TrainHooks) -> dict:
    return pipeline.build_vocabulary(inputs, inputs.run.vocabulary, out_dir)


def _build_phase1_student(pipeline: Pipeline, inputs: Inputs, upstream: dict[str, Path], out_dir: Path, hooks: TrainHooks) -> dict:
    run = inputs.run
    return pipeline.build_phase1_student(inputs, upstream["vocabulary"], run.student, run.phase1, out_dir, hooks)


def _score_task_teacher(pipeline: Pipeline, inputs: Inputs, upstream: dict[str, Path], out_dir: Path, hooks: TrainHooks) -> dict:
    return pipeline.score_task_teacher(inputs, upstream["task_teacher"], out_dir)


def _build_phase2_student(pipeline: Pipeline, inputs: Inputs, upstream: dict[str, Path], out_dir: Path, hooks: TrainHooks) -> dict:
    return pipeline.run_phase2(
        inputs, upstream["phase1_student"], upstream["task_teacher"], upstream["vocabulary"], inputs.run.phase2, out_dir, hooks
    )


STEP_SECONDS = "step_seconds"  # in a build's metrics: its own time in its worker, no start-up or shut-down
PAIR = ("source", "target")
TASK_TEACHER = Step(
    "task_teacher", "task teacher", "task_teacher", ("task_teacher",), ("source",), ("task",), (), True, _build_task_teacher,
    "best_source_score",
)  # fmt: skip
VOCABULARY = Step("vocabulary", "vocabulary", "vocab", ("vocabulary",), PAIR, ("task", "corpora"), (), False, _build_vocabulary)
PHASE1_STUDENT = Step(
    "phase1_student", "phase 1", "phase1", ("student", "phase1"), PAIR, ("corpora",), ("vocabulary",), True, _build_phase1_student,
    "best_val_loss",
)
TEACHER_SCORES = Step(
    "teacher_scores", "teacher scores", "teacher_scores", (), PAIR, ("task", "target_data"), ("task_teacher",), False,
    _score_task_teacher,
)  # fmt: skip
PHASE2_STUDENT = Step(
    "phase2_student", "phase 2", "phase2", ("phase2",), PAIR, ("task", "corpora"), ("task_teacher", "vocabulary", "phase1_student"),
    True, _build_phase2_student, "best_source_score",
)  # fmt: skip
# Artifacts in the store, in build order: shared by every trial, pair, sweep and run that needs them.
SHARED_STEPS: tuple[Step, ...] = (TASK_TEACHER, VOCABULARY, PHASE1_STUDENT, TEACHER_SCORES)
STEPS: dict[str, Step] = {step.kind: step for step in (*SHARED_STEPS, PHASE2_STUDENT)}


def step_inputs(step: Step, run: RunConfig, prints: Fingerprints, upstream_keys: dict[str, str]) -> dict[str, Any]:
    """What makes `step`'s key: the one definition, for single runs and sweeps alike."""
    languages = [{"source": run.source_lang, "target": run.target_lang}[side] for side in step.languages]
    inputs: dict[str, Any] = {
        "teacher": prints.teacher,
        "languages": languages,
        **{section: settings_of(run, section).model_dump(mode="json", exclude={"per_method"}) for section in step.sections},
        **{kind: upstream_keys[kind] for kind in step.upstream},
    }
    if "task" in step.reads:
        inputs["task"] = prints.task
    if "corpora" in step.reads:
        inputs["corpora"] = [prints.corpora[lang] for lang in languages]
    if "target_data" in step.reads:
        inputs["target_data"] = prints.targets[run.target_lang]
    if step is VOCABULARY and run.vocabulary.word_frequencies:
        inputs["word_lists"] = word_lists_fingerprint()
    return inputs


def sections_behind(step: Step) -> set[str]:
    """The config sections that `step` or any step it is built from reads: what can change its key."""
    return set(step.sections).union(*(sections_behind(STEPS[kind]) for kind in step.upstream))


@dataclass(frozen=True)
class StepCall:
    """One step of one run as a `(out_dir, hooks) -> metrics` function a worker can call: it resolves
    the run's inputs in the worker's own process, then builds."""

    pipeline: Pipeline
    step: Step
    run: RunConfig
    upstream: dict[str, Path]

    def __call__(self, out_dir: Path, hooks: TrainHooks) -> dict:
        return self.step.build(self.pipeline, self.pipeline.resolve_inputs(self.run), self.upstream, Path(out_dir), hooks)
