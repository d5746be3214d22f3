"""A finished sweep's folder, as `bistil_ray.serve` reads it, without running a sweep: two pairs with
tiny random students (en-de a BERT, en-zh an XLM-R), a dominated second student for en-de, and the
task teacher in the artifact store beside it.

Import it by name: `from tiny_sweep_results import finished_sweep`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tiny_students import LABELS, bert_student, xlmr_student

from bistil_ray.artifacts import store_under
from bistil_ray.method.export import write_student_directory
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.results import write_table
from bistil_ray.orchestration.sweep_config import SweepConfig
from bistil_ray.results_schema import SUMMARY_SCHEMA, TRIALS_SCHEMA
from bistil_ray.steps import TASK_TEACHER

TEACHER_KEY = "teacherkey"


def _save(model, tokenizer, directory: Path) -> Path:
    directory.mkdir(parents=True)
    write_student_directory(model, tokenizer, directory, label_names=LABELS)
    return directory


def finished_sweep(storage: Path) -> SweepPaths:
    """`storage/tiny`: trials de1 (best en-de), de2 (en-de, 0.005 below it and twice as fast), zh1."""
    paths = SweepPaths(storage, "tiny")
    paths.experiment.mkdir(parents=True)
    paths.config_snapshot.write_text(SweepConfig(name="tiny", target_langs=["de", "zh"]).model_dump_json())
    students = {"de1": bert_student(), "zh1": xlmr_student()}
    torch.manual_seed(7)
    students["de2"] = bert_student()
    for module in students["de2"][0].modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.5)
    rows = []
    for trial_id, (target, score, latency) in {"de1": ("de", 0.80, 2.0), "de2": ("de", 0.795, 1.0), "zh1": ("zh", 0.70, 2.0)}.items():
        path = _save(*students[trial_id], paths.students / trial_id)
        rows.append({
            "sweep": "tiny", "trial_id": trial_id, "status": "ok", "source_lang": "en", "target_lang": target,
            "objective_score": score, "student_latency_ms": latency, "student_path": str(path),
            "task_teacher_key": TEACHER_KEY,
        })
    teacher, tokenizer = bert_student()
    _save(teacher, tokenizer, store_under(storage).path(TASK_TEACHER.kind, TEACHER_KEY))
    write_table(paths.trials_table, rows, TRIALS_SCHEMA)
    summary = [{**row, "is_best": row["trial_id"] in ("de1", "zh1"), "is_pareto": True} for row in rows]
    write_table(paths.summary_table, summary, SUMMARY_SCHEMA)
    return paths
