"""The one executor of the step graph, on its local back-end, with a pipeline of the method's shape
whose builds take no time: reuse, resume from checkpoints, replacement of a placed step, results."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from bistil_ray.artifacts import MANIFEST, store_under
from bistil_ray.config import RunConfig
from bistil_ray.executor import LocalBackend, StepGraph, checkpoints_of
from bistil_ray.results_schema import schema_checked, step_columns
from bistil_ray.steps import PHASE2_STUDENT, SHARED_STEPS, STEP_SECONDS, Fingerprints

PRINTS = Fingerprints(teacher="t", task="k", corpora={"en": "c-en", "de": "c-de"}, targets={"de": "t-de"})


class Killed(RuntimeError):
    """The process dies here (a test stands in for a kill)."""


def counting_pipeline(calls: list[tuple[str, int]], kill_at: tuple[str, int] | None = None) -> SimpleNamespace:
    """Each training build trains 3 steps, checkpointing after each, and is `kill_at` (kind, step)."""

    def train(kind: str, out_dir: Path, hooks) -> dict:
        first = json.loads((hooks.resume_from / "state.json").read_text())["step"] + 1 if hooks.resume_from else 1
        for step in range(first, 4):
            calls.append((kind, step))
            checkpoint = Path(tempfile.mkdtemp())
            (checkpoint / "state.json").write_text(json.dumps({"step": step}))
            hooks.on_evaluation({"step": step}, checkpoint)
            if (kind, step) == kill_at:
                raise Killed(kind)
        (out_dir / "weights").write_text(kind)
        return {"best_source_score": 0.5, "best_val_loss": 1.5, "tokens_per_s": 100.0, "mfu": 0.1}

    def untrained(kind: str, out_dir: Path, result: dict) -> dict:
        calls.append((kind, 0))
        (out_dir / "made").write_text(kind)
        return result

    return SimpleNamespace(
        resolve_inputs=lambda run: SimpleNamespace(run=run),
        build_task_teacher=lambda inputs, config, out_dir, hooks: train("task_teacher", out_dir, hooks),
        build_vocabulary=lambda inputs, config, out_dir: untrained("vocabulary", out_dir, {"vocab_size": 10}),
        build_phase1_student=lambda inputs, vocab, student, config, out_dir, hooks: train("phase1", out_dir, hooks),
        run_phase2=lambda inputs, phase1, teacher, vocab, config, out_dir, hooks: train("phase2", out_dir, hooks),
        score_task_teacher=lambda inputs, teacher, out_dir: untrained("teacher_scores", out_dir, {"teacher_target_score": 0.8}),
    )


def execute(pipeline, run: RunConfig, storage: Path, student: Path) -> StepGraph:
    graph = StepGraph(pipeline, run, PRINTS, store_under(storage), LocalBackend(SimpleNamespace(run=run)))
    for step in SHARED_STEPS:
        graph.shared(step)
    graph.placed(PHASE2_STUDENT, student)
    return graph


def test_a_killed_phase_2_resumes_from_its_checkpoint_and_every_shared_step_is_reused(tmp_path):
    run, student = RunConfig(target_lang="de"), tmp_path / "out" / "student"
    calls: list[tuple[str, int]] = []
    with pytest.raises(Killed):
        execute(counting_pipeline(calls, kill_at=("phase2", 2)), run, tmp_path, student)
    assert calls == [("task_teacher", 1), ("task_teacher", 2), ("task_teacher", 3), ("vocabulary", 0),
                     ("phase1", 1), ("phase1", 2), ("phase1", 3), ("teacher_scores", 0), ("phase2", 1), ("phase2", 2)]  # fmt: skip
    assert not student.exists() and (checkpoints_of(student) / "checkpoint" / "state.json").exists()
    assert not list(tmp_path.glob("artifacts/*/.checkpoints"))  # published artifacts leave none behind

    calls.clear()
    graph = execute(counting_pipeline(calls), run, tmp_path, student)
    assert calls == [("phase2", 3)]  # nothing shared rebuilt; phase 2 from its step-2 checkpoint
    assert all(graph.built[step.kind].cache_hit for step in SHARED_STEPS)
    built = graph.built[PHASE2_STUDENT.kind]
    assert not built.cache_hit and built.path == student and (student / "weights").read_text() == "phase2"
    assert json.loads((student / MANIFEST).read_text())["key"] == built.key
    assert not checkpoints_of(student).parent.exists()


def test_a_placed_step_is_kept_for_the_same_inputs_and_replaced_for_others(tmp_path):
    run, student = RunConfig(target_lang="de"), tmp_path / "student"
    calls: list[tuple[str, int]] = []
    first = execute(counting_pipeline(calls), run, tmp_path, student).built[PHASE2_STUDENT.kind]

    calls.clear()
    again = execute(counting_pipeline(calls), run, tmp_path, student).built[PHASE2_STUDENT.kind]
    assert calls == [] and again.cache_hit and again.key == first.key

    denser = run.model_copy(update={"phase2": run.phase2.model_copy(update={"density": 0.5})})
    replaced = execute(counting_pipeline(calls), denser, tmp_path, student).built[PHASE2_STUDENT.kind]
    assert calls == [("phase2", 1), ("phase2", 2), ("phase2", 3)]
    assert not replaced.cache_hit and replaced.key != first.key
    assert json.loads((student / MANIFEST).read_text())["key"] == replaced.key


def test_a_steps_columns_hold_its_reuse_and_what_its_training_measured_and_unknown_keys_are_refused(tmp_path):
    graph = execute(counting_pipeline([]), RunConfig(target_lang="de"), tmp_path, tmp_path / "student")
    columns = step_columns(PHASE2_STUDENT, graph.built[PHASE2_STUDENT.kind])
    assert columns["phase2_cache_hit"] is False and columns["phase2_key"] == graph.built["phase2_student"].key
    assert columns["phase2_train_seconds"] == graph.built["phase2_student"].metrics[STEP_SECONDS] > 0
    assert (columns["phase2_tokens_per_s"], columns["phase2_mfu"], columns["phase2_best_source_score"]) == (100.0, 0.1, 0.5)
    assert step_columns(SHARED_STEPS[2], graph.built["phase1_student"])["phase1_best_val_loss"] == 1.5
    assert schema_checked(columns) == columns
    with pytest.raises(ValueError, match="not in the results schema.*: phase2_loss, whatever"):
        schema_checked({**columns, "whatever": 1, "phase2_loss": 0.3})
