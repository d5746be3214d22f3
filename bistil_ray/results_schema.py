"""The results schema: one declaration of every column a trial's result fills, for the sweep's
tables (`orchestration/results.py`), `docs/reference.md` and each student's model card.

`TRIAL_FIELDS` holds each column's name, type and description (the description is stored in the
Parquet schema too); `NOT_TABULATED` says what a trial reports but no table keeps, and why. No Ray
here: single runs read it too.
"""

from __future__ import annotations

from typing import Any, Callable

import pyarrow as pa

from bistil_ray.artifacts import Artifact
from bistil_ray.config import DIMENSIONS, dimension_field
from bistil_ray.steps import SHARED_STEPS, STEP_SECONDS, STEPS, Step

STRING, INT, FLOAT, BOOL = pa.string(), pa.int64(), pa.float64(), pa.bool_()


def column(name: str, kind: pa.DataType, description: str) -> pa.Field:
    """A column; its description travels in the Parquet schema, for readers without this package."""
    return pa.field(name, kind, metadata={"description": description})


def artifact_fields(step: Step) -> list[pa.Field]:
    """The columns of one step's published folder (`artifact_columns` fills them)."""
    name = step.kind.replace("_", " ")
    where = f"<storage>/artifacts/{step.kind}/<key>" if step in SHARED_STEPS else "student_path, its bistil_artifact.json"
    return [
        column(f"{step.column}_cache_hit", BOOL, f"the {name} was built before (or by another trial or run) and reused"),
        column(f"{step.column}_key", STRING, f"content key of the {name}: {where}"),
        column(f"{step.column}_build_seconds", FLOAT, f"what building the {name} cost its builder (this or another trial)"),
        column(f"{step.column}_seconds", FLOAT, f"this trial's time to get its {name}: building, waiting or looking it up"),
    ]


def artifact_columns(step: Step, artifact: Artifact) -> dict[str, Any]:
    values = (artifact.cache_hit, artifact.key, artifact.build_seconds, artifact.seconds)
    return {field.name: value for field, value in zip(artifact_fields(step), values)}


def training_fields(step: Step) -> list[tuple[str, pa.Field]]:
    """What a training step's build measured (its metrics' key, and the column that keeps it)."""
    name = step.kind.replace("_", " ")
    return [
        (STEP_SECONDS, column(f"{step.column}_train_seconds", FLOAT, f"the {name} build's own time in its worker (rank 0), without start-up")),
        ("tokens_per_s", column(f"{step.column}_tokens_per_s", FLOAT, f"training tokens per second of the {name}'s build, all workers, at its last evaluation")),
        ("mfu", column(f"{step.column}_mfu", FLOAT, f"model FLOPs utilisation of the {name}'s build at its last evaluation")),
        (step.best, column(f"{step.column}_{step.best}", FLOAT, f"the {name}'s {step.best.replace('_', ' ')} over its evaluations")),
    ]  # fmt: skip


def training_columns(step: Step, metrics: dict[str, Any]) -> dict[str, Any]:
    return {field.name: metrics.get(key) for key, field in training_fields(step)}


def step_columns(step: Step, artifact: Artifact) -> dict[str, Any]:
    """Every column of `step` for a trial (or run) that got `artifact`."""
    trained = training_columns(step, artifact.metrics) if step.trains else {}
    return {**artifact_columns(step, artifact), **trained}


def setting_fields() -> list[pa.Field]:
    """A column per searchable setting (`config.DIMENSIONS`), typed and described as its config field."""
    kinds = {int: INT, float: FLOAT}
    return [
        column(
            name,
            kinds.get(dimension_field(name).annotation, STRING),
            f"{dimension_field(name).description} ({section}.{field}, or search_space.{name} in a sweep)",
        )
        for name, (section, field) in DIMENSIONS.items()
    ]


# Speed of student and teacher measured side by side (`method.evaluation.Efficiency` of each):
# column (before its prefix) -> (description, how it is computed). `pipeline.evaluate_student` fills them.
EFFICIENCY_FIGURES: dict[str, tuple[str, Callable[[Any, Any], float]]] = {
    "student_latency_ms": ("median batch-1 forward time of the student", lambda student, teacher: student.latency_ms_batch1),
    "teacher_latency_ms": ("median batch-1 forward time of the task teacher", lambda student, teacher: teacher.latency_ms_batch1),
    "student_throughput": (
        "sequences per second of the student at batch size 32", lambda student, teacher: student.throughput_batch32
    ),
    "teacher_throughput": (
        "sequences per second of the task teacher at batch size 32", lambda student, teacher: teacher.throughput_batch32
    ),
    "speedup": (
        "student throughput / teacher throughput at batch size 32",
        lambda student, teacher: student.throughput_batch32 / teacher.throughput_batch32,
    ),
    "latency_speedup": (
        "teacher batch-1 latency / student batch-1 latency",
        lambda student, teacher: teacher.latency_ms_batch1 / student.latency_ms_batch1,
    ),
}


def efficiency_fields(prefix: str, where: str) -> list[pa.Field]:
    """The columns of `EFFICIENCY_FIGURES`, measured `where`."""
    return [column(f"{prefix}{name}", FLOAT, f"{text}, {where}") for name, (text, _) in EFFICIENCY_FIGURES.items()]


TRIAL_FIELDS: list[pa.Field] = [
    column("sweep", STRING, "the sweep's name (its folder under --storage)"),
    column("trial_id", STRING, "Ray Tune's trial id; the student is in students/<trial_id>"),
    column(
        "status",
        STRING,
        "ok (finished), pruned (stopped early by the scheduler) or error (failed: at once for an error no retry "
        "can change, else after trial_retries)",
    ),
    column("source_lang", STRING, "language of the labelled task data the student learns from"),
    column("target_lang", STRING, "language the student is made for, evaluated zero-shot"),
    column("teacher", STRING, "the teacher: a hub id, a local directory or builtin:multilingual-e5-small"),
    column("task", STRING, "the task: the built-in task's name, the hub dataset path/config or the train file's stem"),
    column("metric", STRING, "what the score columns measure: accuracy (sequence tasks), entity_f1 (BIO tags), token_accuracy or las (parse tasks)"),
    # searched settings
    *setting_fields(),
    # scores: the objective is a validation score; target_score is the target test score
    column("vocab_size", INT, "tokens in the trimmed bilingual vocabulary"),
    column("objective_score", FLOAT, "what Optuna maximised: the student's objective.score (a validation score)"),
    column("target_score", FLOAT, "the student's score on the target-language test set (zero-shot, never searched on)"),
    column("source_score", FLOAT, "the student's score on the source-language validation set"),
    column("target_macro_f1", FLOAT, "the student's macro-averaged F1 on the target-language test set (sequence tasks; empty for token tasks)"),
    column("target_uas", FLOAT, "the student's unlabelled attachment score on the target-language test set (parse tasks; empty for others)"),
    column("teacher_target_score", FLOAT, "the task teacher's score on the same target-language test set"),
    column("teacher_target_uas", FLOAT, "the task teacher's unlabelled attachment score on the same test set (parse tasks)"),
    column("teacher_source_score", FLOAT, "the task teacher's score on the same source-language validation set"),
    column(
        "target_validation_score",
        FLOAT,
        "the student's score on the target-language validation set, where the task has one (objective.score: "
        "target_validation)",
    ),
    column("teacher_target_validation_score", FLOAT, "the task teacher's score on the same target validation set"),
    column("retention", FLOAT, "target_score / teacher_target_score"),
    # efficiency, student against teacher on the same machine
    column("student_params", INT, "parameters of the student with its task head"),
    column("teacher_params", INT, "parameters of the task teacher"),
    column("student_bytes", INT, "bytes of the student's weights, config and tokenizer files"),
    *efficiency_fields("", "on the CPU (the deployment figure)"),
    *efficiency_fields("gpu_", "on the trial's GPU, where it has one"),
    column("scored_on", STRING, "the device the student was scored on: cpu, or cuda in a GPU trial"),
    column("score_dtype", STRING, "the dtype of the student's matrix products when scored (phase2.precision)"),
    # the steps: reuse, cost and what each training measured
    *(field for step in STEPS.values() for field in artifact_fields(step)),
    *(field for step in STEPS.values() if step.trains for _, field in training_fields(step)),
    column("evaluation_seconds", FLOAT, "wall time of the student's evaluation (scores, size and speed)"),
    column("trial_seconds", FLOAT, "wall time of the whole trial (of the whole run, for bistil_ray.run)"),
    column("student_path", STRING, "the student: a Hugging Face model directory (safetensors + trimmed tokenizer)"),
    column("student_removed", BOOL, "the student was deleted from students/ by keep_students (pareto or best): a better one of its pair made it redundant"),
    column("node", STRING, "id of the Ray node that ran the trial (ray.get_runtime_context().get_node_id())"),
    column("error", STRING, "the error's type and message in one line, when status is error"),
]
# What a trial reports that is not a column, and why: every other key of its result is one.
NOT_TABULATED = {
    "phase2_step": "the scheduler's clock; phase2.full_steps + sparse_steps",
    "completed": "status says it",
    "teacher_scored_on": "the device of the teacher's scores: a property of the teacher_scores artifact",
}
TRIAL_COLUMNS: list[tuple[str, pa.DataType]] = [(field.name, field.type) for field in TRIAL_FIELDS]
TRIALS_SCHEMA = pa.schema(TRIAL_FIELDS)
SUMMARY_SCHEMA = TRIALS_SCHEMA.append(column("is_best", BOOL, "the pair's best ok trial by objective_score")).append(
    column("is_pareto", BOOL, "among the pair's ok trials, none has a higher objective_score and a lower trade-off")
)


def schema_checked(result: dict[str, Any]) -> dict[str, Any]:
    """`result` (a trial's or a run's), refused if it has a key that is neither a column nor in
    `NOT_TABULATED`: every figure a trial measures is declared here, or said not to be kept."""
    unknown = sorted(set(result) - set(TRIALS_SCHEMA.names) - set(NOT_TABULATED))
    if unknown:
        raise ValueError(f"result keys not in the results schema (bistil_ray/results_schema.py): {', '.join(unknown)}")
    return result


def trial_row(
    constants: dict[str, Any], trial_id: str, config: dict[str, Any], result: dict[str, Any], error: str | None
) -> dict[str, Any]:
    """One row: the sweep's constants, the trial's settings and what it reported. A trial that failed
    in a way no retry could change reports its `error` itself and ends without Tune's retry."""
    error = error if error is not None else (result or {}).get("error")
    if error is not None:
        status = "error"
    else:
        status = "ok" if result.get("completed") else "pruned"
    row = {**constants, **config, **result, "trial_id": trial_id, "status": status, "error": error, "student_removed": False}
    return {name: _as_column_type(row.get(name), kind) for name, kind in TRIAL_COLUMNS}


def _as_column_type(value: Any, kind: pa.DataType) -> Any:
    """Plain Python values of the column's type (results may hold numpy scalars or ints for floats)."""
    if value is None:
        return None
    return {STRING: str, INT: int, FLOAT: float, BOOL: bool}[kind](value)


def summary_rows(rows: list[dict[str, Any]], tradeoff: str) -> list[dict[str, Any]]:
    """Per pair, the best ok trial by the objective and the Pareto members (objective up, tradeoff down)."""
    summary = []
    for target in dict.fromkeys(row["target_lang"] for row in rows):
        done = [row for row in rows if row["target_lang"] == target and row["status"] == "ok"]
        if not done:
            continue
        best = max(done, key=lambda row: row["objective_score"])
        front = pareto_front(done, tradeoff)
        for row in done:
            if row is best or any(row is member for member in front):
                summary.append({**row, "is_best": row is best, "is_pareto": any(row is member for member in front)})
    return summary


def pareto_front(rows: list[dict[str, Any]], tradeoff: str, score: str = "objective_score") -> list[dict[str, Any]]:
    """Rows no other row dominates (as good on `score`, higher is better, and `tradeoff`, lower is better;
    strictly better on one)."""
    measured = [row for row in rows if row.get(tradeoff) is not None and row.get(score) is not None]

    def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
        no_worse = a[score] >= b[score] and a[tradeoff] <= b[tradeoff]
        better = a[score] > b[score] or a[tradeoff] < b[tradeoff]
        return no_worse and better

    return [row for row in measured if not any(dominates(other, row) for other in measured)]


def description(name: str) -> str:
    return TRIALS_SCHEMA.field(name).metadata[b"description"].decode()
