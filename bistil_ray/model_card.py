"""The model card a student ships with: `README.md` in its directory, written once it is evaluated.

A Hugging Face card a user can publish as it is: the metadata header (languages, the teacher's
licence, base model, task, datasets, model-index with the target and source scores) and, in prose
and tables, what the student is, how it was made, how it scores and runs beside its task teacher,
and how to load it. Every figure is a column of the results schema (`results_schema`), named and
described as there; a figure the evaluation did not measure is left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCardData

from bistil_ray.atomic import atomic_write_text
from bistil_ray.config import RunConfig
from bistil_ray.method.export import PIPELINE_TAGS, loading_snippet
from bistil_ray.method.onnx_export import FLOAT32_FILE, INT8_FILE, ONNX_DIR
from bistil_ray.results_schema import description

# (student column, task teacher column): the rows of the card's comparison table.
COMPARED = [
    ("target_score", "teacher_target_score"),
    ("target_validation_score", "teacher_target_validation_score"),
    ("source_score", "teacher_source_score"),
    ("target_macro_f1", None),
    ("target_uas", "teacher_target_uas"),
    ("student_params", "teacher_params"),
    ("student_bytes", None),
    ("student_latency_ms", "teacher_latency_ms"),
    ("student_throughput", "teacher_throughput"),
    ("gpu_student_latency_ms", "gpu_teacher_latency_ms"),
    ("gpu_student_throughput", "gpu_teacher_throughput"),
]
RATIOS = ("retention", "speedup", "latency_speedup", "gpu_speedup")


def _figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def card_text(run: RunConfig, result: dict[str, Any], *, base_model: str | None, license: str | None) -> str:
    pair = f"{run.source_lang}-{run.target_lang}"
    task = run.task
    dataset = task.hub.path if task.hub is not None else task.name
    metric, task_type = result.get("metric") or "accuracy", PIPELINE_TAGS[task.kind]
    scores = [
        EvalResult(
            task_type=task_type, dataset_type=dataset, dataset_name=f"{task.name} ({lang})",
            dataset_config=lang, dataset_split=split, metric_type=metric, metric_value=result[column],
            metric_name=f"{split} {metric.replace('_', ' ')} ({'zero-shot, ' if lang == run.target_lang else ''}{lang})",
        )  # fmt: skip
        for column, lang, split in (("target_score", run.target_lang, "test"), ("source_score", run.source_lang, "validation"))
        if result.get(column) is not None
    ]
    data = ModelCardData(
        language=[run.source_lang, run.target_lang],
        license=license,
        base_model=base_model,
        library_name="transformers",
        pipeline_tag=task_type,
        tags=["bistil", "knowledge-distillation", "bilingual", "cross-lingual-transfer"],
        datasets=[task.hub.path] if task.hub is not None else None,
        metrics=[metric],
        model_name=f"bistil-{task.name}-{pair}",
        eval_results=scores or None,
    )
    rows = [
        f"| `{student}` | {_figure(result[student])} | {_figure(result[teacher]) if teacher and result.get(teacher) is not None else ''} "
        f"| {description(student)} |"
        for student, teacher in COMPARED
        if result.get(student) is not None
    ]
    ratios = [f"| `{name}` | {_figure(result[name])} | {description(name)} |" for name in RATIOS if result.get(name) is not None]
    teacher = base_model or run.teacher
    lines = [
        f"# BiStil student for {task.name}, {run.source_lang} → {run.target_lang}",
        "",
        f"A {result.get('student_layers', run.student.layers)}-layer sequence classifier for **{run.target_lang}**, "
        f"distilled bilingually (BiStil) from `{teacher}` with a vocabulary trimmed to the "
        f"{_figure(result.get('vocab_size', '?'))} pieces {run.source_lang} and {run.target_lang} use. It learned the "
        f"task `{task.name}` from {run.source_lang} data only: its {run.target_lang} scores are zero-shot "
        "cross-lingual transfer.",
        "",
        "## How it was made",
        "",
        f"1. Task teacher: `{teacher}` trained on {run.source_lang} `{task.name}` "
        f"({run.task_teacher.method}, {run.task_teacher.resolved().steps} steps).",
        f"2. Phase 1, general distillation on {run.source_lang} and {run.target_lang} text into "
        f"{run.student.layers} layers: {run.phase1.steps} steps x {run.phase1.batch_size}, lr {run.phase1.lr:g}.",
        f"3. Phase 2, task distillation with Lottery-Ticket Sparse Fine-Tuning: {run.phase2.full_steps} dense + "
        f"{run.phase2.sparse_steps} sparse steps x {run.phase2.batch_size}, density {run.phase2.density:g}, "
        f"lr {run.phase2.lr:g}, {run.phase2.target_text_ratio:.0%} of the steps on unlabelled {run.target_lang} text.",
        "",
        "## Scores and speed beside the task teacher",
        "",
        "| figure | this student | task teacher | what it is |",
        "|---|---|---|---|",
        *rows,
        "",
        "| ratio | value | what it is |",
        "|---|---|---|",
        *ratios,
        "",
        "## Use",
        "",
        *loading_snippet(task.kind),
        "",
        f"For ONNX Runtime on CPUs: `python -m bistil_ray.export DIRECTORY --onnx --int8` writes "
        f"`{ONNX_DIR}/{FLOAT32_FILE}` and `{ONNX_DIR}/{INT8_FILE}`. Made with bistil_ray; its run metadata is in "
        "`bistil_ray.json`.",
    ]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"


def write_model_card(student_dir: Path, run: RunConfig, result: dict[str, Any]) -> None:
    """Replace the student's README.md with its card, in one rename."""
    from bistil_ray.assets.teachers import teacher_origin

    base_model, license = teacher_origin(run.teacher)
    atomic_write_text(Path(student_dir) / "README.md", card_text(run, result, base_model=base_model, license=license))
