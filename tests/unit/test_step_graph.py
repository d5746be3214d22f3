"""One step graph for single runs and sweeps: one key per step, what each key depends on, one
pipeline interface that the real pipeline and the tests' fake both satisfy, and evaluation on the
device the process holds."""

from __future__ import annotations

import inspect
from pathlib import Path

from sweep_fakes import fake_pipeline
from tiny_task import TINY_SETTINGS

from bistil_ray.config import RunConfig
from bistil_ray.orchestration.plan import dimensions_behind
from bistil_ray.steps import PHASE1_STUDENT, PHASE2_STUDENT, SHARED_STEPS, STEPS, TASK_TEACHER, TEACHER_SCORES, VOCABULARY, Pipeline

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
    run = RunConfig.model_validate({**TINY_SETTINGS, "target_lang": "de"})
    assert [STEPS[kind].training_steps(run) for kind in STEPS] == [4, None, 2, None, 4]
    assert dimensions_behind(TEACHER_SCORES) == ("teacher_method",)


def test_evaluation_scores_the_student_on_the_device_the_process_holds_at_its_trained_length_and_reuses_the_teacher_scores(monkeypatch):
    import datasets
    import torch
    from fixtures_teacher import tiny_bert_config
    from transformers import BertForSequenceClassification

    from bistil_ray import pipeline
    from bistil_ray.data.tasks import TaskData
    from bistil_ray.inputs import Inputs

    split = datasets.Dataset.from_dict({"text": ["a b", "c d"], "label": [0, 1]})
    task = TaskData("toy", ["even", "odd"], ("text",), split, split, {"de": split}, {"de": split})
    run = RunConfig.model_validate({"target_lang": "de", "phase2": {"precision": "bf16", "max_length": 48}})
    inputs = Inputs(run, "unused", task, [], [])
    held = torch.device("cuda", 3)  # what a GPU trial's worker holds; nothing runs on it here
    scored_with = []

    def evaluate_task(model, tokenizer, dataset, fields, label_names, *, device, dtype=torch.float32, max_length=128):
        scored_with.append((device, dtype, max_length))
        return {"accuracy": 0.5, "macro_f1": 0.4, "score": 0.5, "metric": "accuracy"}

    student = BertForSequenceClassification(tiny_bert_config())
    monkeypatch.setattr(pipeline, "training_device", lambda: held)
    monkeypatch.setattr(pipeline, "evaluate_task", evaluate_task)
    monkeypatch.setattr(pipeline, "load_exported", lambda directory: (student, list(range(64))))
    teacher_scores = {"teacher_source_score": 0.9, "teacher_target_score": 0.8, "teacher_target_validation_score": 0.7}
    result = pipeline.evaluate_student(inputs, Path("student"), Path("teacher"), teacher_scores, efficiency=False)

    assert scored_with == [(held, torch.bfloat16, 48)] * 3  # target test, source validation, target validation: cut where phase 2 cut
    assert result["scored_on"] == "cuda" and result["score_dtype"] == "bfloat16"
    assert result["teacher_target_score"] == 0.8 and result["retention"] == 0.5 / 0.8
