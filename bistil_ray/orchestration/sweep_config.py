"""The sweep YAML: one teacher and task, a source language, many targets, a search space.

The method's sections (`task_teacher`, `vocabulary`, `student`, `phase1`, `phase2`) are the models of
`bistil_ray.config`, so a sweep and a single run accept the same settings with the same bounds; a
trial's run configuration is the sweep's sections with the trial's searched values written in and
validated again as a `RunConfig`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, NoReturn

from huggingface_hub import try_to_load_from_cache
from pydantic import Field, ValidationError

from bistil_ray.config import (
    PairSettings,
    Phase1Config,
    Phase2Config,
    RunConfig,
    StrictModel,
    StudentConfig,
    TaskSpec,
    TaskTeacherConfig,
    VocabularyConfig,
    expand_user,
    load_config,
)
from bistil_ray.data.ud import ud_folder
from bistil_ray.errors import UserInputError
from bistil_ray.orchestration.search_space import DIMENSIONS, Dimension, SearchSpace, apply_dimensions

SECTION_MODELS = {
    "task_teacher": TaskTeacherConfig,
    "student": StudentConfig,
    "phase1": Phase1Config,
    "phase2": Phase2Config,
    "vocabulary": VocabularyConfig,
}

# Depths of teachers whose config cannot be read offline; anything else is read from its config.json.
KNOWN_TEACHER_DEPTHS = {
    "builtin:multilingual-e5-small": 12,
    "bert-base-multilingual-cased": 12,
    "google-bert/bert-base-multilingual-cased": 12,
    "bert-base-multilingual-uncased": 12,
    "xlm-roberta-base": 12,
    "FacebookAI/xlm-roberta-base": 12,
    "xlm-roberta-large": 24,
    "FacebookAI/xlm-roberta-large": 24,
    "intfloat/multilingual-e5-small": 12,
    "intfloat/multilingual-e5-base": 12,
    "intfloat/multilingual-e5-large": 24,
}


class ResourcesConfig(StrictModel):
    """Where trials run. Every training phase of a trial runs on this many workers: one worker in a
    Ray task, several in a Ray Train run (`orchestration/train_runner`)."""

    workers_per_trial: int = Field(1, ge=1, description="data-parallel workers of each training phase")
    use_gpu: bool = Field(False, description="train and evaluate on GPUs (NCCL between workers)")
    cpus_per_worker: float = Field(1.0, gt=0, description="also what the vocabulary and evaluation tasks hold")
    gpus_per_worker: float = Field(1.0, gt=0, description="used when use_gpu is true")
    concurrent_trials: int = Field(
        2, ge=1, description="at most; also bounded by what the cluster can run at once without starving"
    )
    trial_retries: int = Field(1, ge=0, description="Tune retries of a failed trial (same trial id)")
    worker_restarts: int = Field(2, ge=0, description="restarts of a training phase whose worker failed (from its checkpoint)")
    controller_failures: int = Field(1, ge=0, description="Ray Train controller failures tolerated per run (phases of several workers)")
    worker_start_timeout_s: float = Field(300.0, gt=0, description="a phase whose workers cannot start fails after this")
    # 0.1 s rather than Ray's 0.5 s: a finished phase waits for the next poll before its workers shut
    # down, and polling more often does not slow training (bench/README.md).
    report_poll_interval_s: float = Field(
        0.1, gt=0, description="how often Ray Train polls workers (phases of several workers); each report waits up to this long"
    )

    def per_worker(self) -> dict[str, float]:
        """What each data-parallel worker holds (all on one node)."""
        return {"CPU": self.cpus_per_worker, **({"GPU": self.gpus_per_worker} if self.use_gpu else {})}

    def per_trial(self) -> dict[str, float]:
        """What one training phase of a trial holds at once."""
        return {name: self.workers_per_trial * amount for name, amount in self.per_worker().items()}


class ObjectiveConfig(StrictModel):
    """What Optuna maximises per pair: a validation score, never the target test score."""

    score: Literal["source_validation", "target_validation"] = Field(
        "source_validation", description="the student's score on the source or on a target-language validation set"
    )
    tradeoff: Literal["student_latency_ms", "student_params", "student_bytes"] = Field(
        "student_latency_ms", description="minimised against the score in the Pareto front"
    )
    multi_objective: bool = Field(False, description="search score and tradeoff together (Optuna multi-objective)")


class AshaConfig(StrictModel):
    """Early stopping of phase 2 by its source-validation score, among trials of one pair."""

    grace_period_steps: int = Field(100, gt=0, description="phase-2 steps before a trial can be stopped")
    reduction_factor: float = Field(3.0, gt=1, description="about 1 in this many trials goes on at each rung")


class ExportConfig(StrictModel):
    """What the sweep does with each pair's best student once every trial has ended."""

    onnx: bool = Field(False, description="write the best student's ONNX graph (students/<trial>/onnx/model.onnx)")
    int8: bool = Field(True, description="with onnx: also its dynamically quantised int8 graph, for CPUs")


class MlflowConfig(StrictModel):
    """MLflow tracking: one run per trial, with its settings, each evaluation and its final row."""

    enabled: bool = Field(False, description="track the sweep's trials in MLflow (needs the `tracking` extra)")
    tracking_uri: str | None = Field(
        None,
        description="an MLflow tracking server (http://...) or database (sqlite:///...); "
        "default: sqlite:///<storage>/<sweep>/mlflow.db",
    )
    experiment: str | None = Field(None, description="the MLflow experiment; default: the sweep's name")


class SweepConfig(PairSettings):
    # 100 characters: a folder name, with room for the suffixes of its staging copies within the
    # 255 bytes most filesystems allow.
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100, description="the sweep's folder under --storage"
    )
    target_langs: list[str] = Field(min_length=1, description="one language pair per target language")
    search_space: SearchSpace = SearchSpace()
    trials_per_pair: int = Field(4, ge=1, description="Optuna trials of each pair")
    objective: ObjectiveConfig = ObjectiveConfig()
    scheduler: Literal["none", "asha"] = Field(
        "none", description="none: every trial runs to the end; asha: stop weak trials of a pair early"
    )
    asha: AshaConfig = AshaConfig()
    resources: ResourcesConfig = ResourcesConfig()
    export: ExportConfig = ExportConfig()
    mlflow: MlflowConfig = MlflowConfig()
    keep_students: Literal["all", "pareto", "best"] = Field(
        "all",
        description="all: every trial's student stays in students/; pareto: a student is removed once its pair's "
        "Pareto front (objective against objective.tradeoff) has moved past it; best: only each pair's best by "
        "the objective stays. A removed student's row stays, with student_removed true",
    )
    seed: int = Field(0, description="seeds each pair's Optuna sampler")

    @property
    def pairs(self) -> list[str]:
        return [f"{self.source_lang}-{target}" for target in self.target_langs]

    @property
    def total_trials(self) -> int:
        return self.trials_per_pair * len(self.target_langs)

    def dimensions(self) -> dict[str, Dimension]:
        """Every dimension, the unsearched ones fixed at their section's value."""
        sections = self.sections()
        return {
            name: getattr(self.search_space, name) or Dimension(fixed=sections[section][field])
            for name, (section, field) in DIMENSIONS.items()
        }

    def sections(self) -> dict[str, dict[str, Any]]:
        return {name: getattr(self, name).model_dump() for name in SECTION_MODELS}

    def with_absolute_paths(self) -> "SweepConfig":
        """Local paths (teacher, task files, the UD folder, corpora) made absolute: trials run elsewhere."""
        data = self.model_dump()
        teacher = expand_user(self.teacher, "teacher")
        if teacher.exists():
            data["teacher"] = str(teacher.resolve())
        files = data["task"]["files"]
        if files is not None:
            files.update(train=Path(files["train"]).resolve(), validation=Path(files["validation"]).resolve())
            for split in ("test", "target_validation"):
                files[split] = {lang: Path(path).resolve() for lang, path in files[split].items()}
        if self.task.ud is not None:
            data["task"]["ud"]["folder"] = ud_folder(self.task.ud)
        for corpus in data["corpora"].values():
            if corpus["file"] is not None:
                corpus["file"] = Path(corpus["file"]).resolve()
        return SweepConfig.model_validate(data)

    def run_config(self, target_lang: str, values: dict[str, Any]) -> RunConfig:
        """The configuration of one trial: this sweep's settings with the searched `values`."""
        shared = {name: getattr(self, name) for name in PairSettings.model_fields}
        return RunConfig.model_validate({**shared, "target_lang": target_lang, **apply_dimensions(self.sections(), values)})


def load_sweep(path: Path, overrides: list[str] = ()) -> SweepConfig:
    sweep = load_config(SweepConfig, path, overrides)
    check_sweep(sweep, str(path))
    return sweep


def check_sweep(sweep: SweepConfig, source: str) -> None:
    """Checks that span several fields; each error names the YAML path it is about."""

    def fail(path: str, message: str) -> NoReturn:
        raise UserInputError(f"{source}: {path}: {message}")

    for index, target in enumerate(sweep.target_langs):
        if target == sweep.source_lang:
            fail(f"target_langs.{index}", f"'{target}' is the source language; a pair needs two languages")
        if target in sweep.target_langs[:index]:
            fail(f"target_langs.{index}", f"'{target}' is listed twice")
    for name, dimension in sweep.dimensions().items():
        message = _dimension_problem(sweep, name, dimension)
        if message:
            fail(f"search_space.{name}", message)
    depth = teacher_depth(sweep.teacher)
    layers = sweep.dimensions()["student_layers"].extremes()
    if depth is not None and max(layers) > depth:
        path = "search_space.student_layers" if sweep.search_space.student_layers else "student.layers"
        fail(path, f"{max(layers)} layers is deeper than the teacher ({sweep.teacher}: {depth} layers)")
    if sweep.objective.score == "target_validation":
        missing = [target for target in sweep.target_langs if not _has_target_validation(sweep.task, target)]
        if missing:
            fail(
                "objective.score",
                f"target_validation needs a target validation set (task.hub.target_validation_split or "
                f"task.files.target_validation; the built-in task has one for most languages) for {', '.join(missing)}",
            )
    if sweep.scheduler == "asha":
        if sweep.objective.multi_objective:
            fail("scheduler", "asha stops trials by one score; it cannot be combined with objective.multi_objective")
        steps = sweep.phase2.full_steps + sweep.phase2.sparse_steps
        if sweep.asha.grace_period_steps >= steps:
            fail("asha.grace_period_steps", f"must be below phase 2's {steps} steps")


def _dimension_problem(sweep: SweepConfig, name: str, dimension: Dimension) -> str | None:
    """Why some value of `dimension` is not a valid setting, checked by the section's own model."""
    section, field = DIMENSIONS[name]
    model = SECTION_MODELS[section]
    if model.model_fields[field].annotation is int and dimension.kind in ("uniform", "loguniform"):
        return f"{section}.{field} is a whole number; use a number, choice or integer range"
    for value in dimension.extremes():
        try:
            model.model_validate({**getattr(sweep, section).model_dump(), field: value})
        except ValidationError as error:
            return f"{value!r}: {error.errors()[0]['msg']}"
    return None


def _has_target_validation(task: TaskSpec, target: str) -> bool:
    if task.hub is not None:
        return task.hub.target_validation_split is not None
    if task.files is not None:
        return target in task.files.target_validation
    if task.ud is not None:
        return True
    from bistil_ray.data.builtin import builtin_task

    builtin = builtin_task(task.builtin)
    return target in builtin.available_languages() and bool(builtin.target_splits(target)[1])


def teacher_depth(teacher: str) -> int | None:
    """The teacher's number of layers when it is known without a download, else None."""
    if teacher in KNOWN_TEACHER_DEPTHS:
        return KNOWN_TEACHER_DEPTHS[teacher]
    config = expand_user(teacher, "teacher") / "config.json"
    if not config.is_file():
        try:
            cached = try_to_load_from_cache(teacher, "config.json")
        except ValueError:  # not a hub id either
            return None
        if not isinstance(cached, str):
            return None
        config = Path(cached)
    try:
        layers = json.loads(config.read_text(encoding="utf-8")).get("num_hidden_layers")
    except (OSError, ValueError):
        return None
    return layers if isinstance(layers, int) else None
