"""One step graph for single runs and sweeps: one store, one key per step, one pipeline interface.

A tiny pair built by `run --storage S` is reused by a sweep on `S` (cache hits in trials.parquet);
an edited phase-1 text file is rebuilt by both. The real pipeline and the tests' fake both satisfy
`steps.Pipeline`.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
from sweep_fakes import fake_pipeline
from tiny_task import GERMAN, TOPICS, files_task, tiny_teacher

from bistil_ray.config import RunConfig
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.plan import dimensions_behind
from bistil_ray.results_schema import NOT_TABULATED, TRIALS_SCHEMA
from bistil_ray.orchestration.sweep_config import SweepConfig
from bistil_ray.steps import PHASE1_STUDENT, PHASE2_STUDENT, SHARED_STEPS, STEPS, TASK_TEACHER, TEACHER_SCORES, VOCABULARY, Pipeline

TINY = {
    "source_lang": "en",
    "task_teacher": {"steps": 4, "eval_every": 4, "batch_size": 8, "lr": 1e-3},
    "vocabulary": {"word_frequencies": False},
    "student": {"layers": 2},
    "phase1": {"steps": 2, "eval_every": 2, "batch_size": 8, "validation_sentences": 8},
    "phase2": {"full_steps": 2, "sparse_steps": 2, "eval_every": 2, "batch_size": 8, "lr": 1e-3},
}
SWEEP_ONLY = {
    "target_langs": ["de"],
    "trials_per_pair": 1,
    "resources": {"workers_per_trial": 1, "concurrent_trials": 1, "report_poll_interval_s": 0.2},
}


def protocol_mismatches(implementation: object) -> list[str]:
    """What in `implementation` does not fit `Pipeline`: a missing function, or parameters that differ
    (extra parameters are allowed where they have defaults)."""
    problems = []
    for name, method in inspect.getmembers(Pipeline, inspect.isfunction):
        if name.startswith("_"):
            continue
        function = getattr(implementation, name, None)
        if not callable(function):
            problems.append(f"{name}: missing")
            continue
        wanted = list(inspect.signature(method).parameters)[1:]  # without self
        given = inspect.signature(function).parameters
        names = list(given)
        extra = [parameter for parameter in names[len(wanted):] if given[parameter].default is inspect.Parameter.empty]
        if names[: len(wanted)] != wanted or extra:
            problems.append(f"{name}{tuple(names)}: expected {tuple(wanted)}")
    return problems


def test_the_real_pipeline_and_the_tests_fake_satisfy_the_pipeline_interface():
    from bistil_ray import pipeline

    assert protocol_mismatches(pipeline) == []
    assert protocol_mismatches(fake_pipeline()) == []

    def evaluate_student(run, student_dir):
        return {}

    broken = fake_pipeline()
    broken.evaluate_student = evaluate_student
    del broken.build_vocabulary
    assert protocol_mismatches(broken) == [
        "build_vocabulary: missing",
        "evaluate_student('run', 'student_dir'): expected ('inputs', 'student_dir', 'task_teacher_dir', 'teacher_scores')",
    ]


def test_the_graph_says_which_searched_settings_each_step_depends_on():
    assert [step.kind for step in SHARED_STEPS] == ["task_teacher", "vocabulary", "phase1_student", "teacher_scores"]
    assert all(STEPS[kind] in SHARED_STEPS for kind in PHASE1_STUDENT.upstream)
    assert dimensions_behind(TASK_TEACHER) == ("teacher_method",)
    assert dimensions_behind(VOCABULARY) == ("vocab_threshold",)
    assert set(dimensions_behind(PHASE1_STUDENT)) == {"student_layers", "phase1_lr", "vocab_threshold"}
    assert {"density", "lr", "teacher_method", "student_layers"} <= set(dimensions_behind(PHASE2_STUDENT))
    run = RunConfig.model_validate({**TINY, "target_lang": "de"})
    assert [STEPS[kind].training_steps(run) for kind in STEPS] == [4, None, 2, None, 4]
    assert dimensions_behind(TEACHER_SCORES) == ("teacher_method",)


@pytest.mark.ray
@pytest.mark.timeout(600)
def test_a_run_and_a_sweep_on_one_storage_share_every_artifact_and_rebuild_an_edited_corpus(tmp_path, cluster):
    from bistil_ray.orchestration.driver import run_sweep
    from bistil_ray.run import run

    settings = {
        **TINY,
        **files_task(tmp_path / "files"),
        "teacher": str(tiny_teacher(tmp_path / "teacher", sum(TOPICS.values(), list(GERMAN.values())))),
    }
    storage = tmp_path / "storage"

    def single_run() -> dict:
        config = RunConfig.model_validate({**settings, "target_lang": "de", "output_dir": str(tmp_path / "runs")})
        return run(config, storage)

    def sweep(name: str) -> dict:
        config = SweepConfig.model_validate({**settings, **SWEEP_ONLY, "name": name})
        [row] = run_sweep(config, SweepPaths(storage, name), resume=False, address=cluster.address, live=False)
        assert row["status"] == "ok", row["error"]
        return row

    built = single_run()
    reused = sweep("after-run")
    recorded = json.loads(next((storage / "after-run" / "results").glob("*.json")).read_text())
    assert set(recorded) - set(TRIALS_SCHEMA.names) - set(NOT_TABULATED) == set()
    assert reused["target_macro_f1"] is not None and reused["teacher_source_score"] == built["teacher_source_score"]
    assert reused["student_throughput"] > 0 and reused["gpu_speedup"] is None and reused["scored_on"] == "cpu"
    assert [reused[f"{step.column}_cache_hit"] for step in SHARED_STEPS] == [True, True, True, True]
    assert [reused[f"{step.column}_key"] for step in SHARED_STEPS] == [built[f"{step.column}_key"] for step in SHARED_STEPS]

    german_text = Path(settings["corpora"]["de"]["file"])
    german_text.write_text(german_text.read_text() + "\nbrot suppe apfel tor")
    edited = sweep("after-edit")
    assert [edited[f"{step.column}_cache_hit"] for step in SHARED_STEPS] == [True, False, False, True]
    rebuilt = single_run()
    assert [rebuilt[f"{step.column}_key"] for step in SHARED_STEPS] == [edited[f"{step.column}_key"] for step in SHARED_STEPS]
    assert rebuilt["phase2_key"] != built["phase2_key"]
    assert rebuilt["vocab_key"] != built["vocab_key"]


def test_evaluation_scores_the_student_on_the_device_the_process_holds_and_reuses_the_teacher_scores(monkeypatch):
    import datasets
    import torch
    from fixtures_teacher import tiny_bert_config
    from transformers import BertForSequenceClassification

    from bistil_ray import pipeline
    from bistil_ray.data.tasks import TaskData

    split = datasets.Dataset.from_dict({"text": ["a b", "c d"], "label": [0, 1]})
    task = TaskData("toy", ["even", "odd"], ("text",), split, split, {"de": split}, {"de": split})
    run = RunConfig.model_validate({"target_lang": "de", "phase2": {"precision": "bf16"}})
    inputs = pipeline.Inputs(run, "unused", task, [], [])
    held = torch.device("cuda", 3)  # what a GPU trial's worker holds; nothing runs on it here
    scored_with = []

    def evaluate_task(model, tokenizer, dataset, fields, label_names, *, device, dtype=torch.float32):
        scored_with.append((device, dtype))
        return {"accuracy": 0.5, "macro_f1": 0.4, "score": 0.5, "metric": "accuracy"}

    student = BertForSequenceClassification(tiny_bert_config())
    monkeypatch.setattr(pipeline, "training_device", lambda: held)
    monkeypatch.setattr(pipeline, "evaluate_task", evaluate_task)
    monkeypatch.setattr(pipeline, "load_exported", lambda directory: (student, list(range(64))))
    teacher_scores = {"teacher_source_score": 0.9, "teacher_target_score": 0.8, "teacher_target_validation_score": 0.7}
    result = pipeline.evaluate_student(inputs, Path("student"), Path("teacher"), teacher_scores, efficiency=False)

    assert scored_with == [(held, torch.bfloat16)] * 3  # target test, source validation, target validation
    assert result["scored_on"] == "cuda" and result["score_dtype"] == "bfloat16"
    assert result["teacher_target_score"] == 0.8 and result["retention"] == 0.5 / 0.8
