"""Fast fake pipeline steps and a small teacher folder for the Ray sweep tests.

Imported by the sweep tests (`from sweep_fakes import fake_pipeline`), and by a driver subprocess
started with `tests/` on its PYTHONPATH (`python -c "import sweep_fakes; sweep_fakes.drive(...)"`).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace


def fake_pipeline(step_log: Path | None = None, step_seconds: float = 0.0) -> SimpleNamespace:
    """The pipeline's functions, as nested functions so that Ray pickles them by value (Ray's workers
    cannot import this module). With `step_log`, every step appends `<step> <target> <density>` to it
    when it starts: the density, sampled by Optuna, tells the trials apart. Each training step takes
    `step_seconds`."""

    def log(step: str, inputs) -> None:
        run = inputs.run
        if step_log is not None:
            with open(step_log, "a") as handle:  # one short append: whole lines even from many processes
                handle.write(f"{step} {run.target_lang} {run.phase2.density!r}\n")

    def train(out_dir: Path, hooks, steps: int, result: dict) -> dict:
        """A loop like the method's: resumes from its checkpoint, reports and checkpoints per evaluation."""
        first = json.loads((hooks.resume_from / "state.json").read_text())["step"] + 1 if hooks.resume_from else 1
        for step in range(first, steps + 1):
            time.sleep(step_seconds)
            checkpoint = Path(tempfile.mkdtemp())
            (checkpoint / "state.json").write_text(json.dumps({"step": step}))
            hooks.on_evaluation({"step": step, "source_score": 0.5}, checkpoint)
        import ray  # in the worker that runs this step

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        (out_dir / "config.json").write_text(json.dumps({"worker_cpus": cpus}))
        return result

    def build_task_teacher(inputs, config, out_dir: Path, hooks) -> dict:
        log("task_teacher", inputs)
        return train(out_dir, hooks, 2, {"source_score": 0.9})

    def build_vocabulary(inputs, config, out_dir: Path) -> dict:
        log("vocabulary", inputs)
        (out_dir / "vocab.json").write_text("{}")
        return {"vocab_size": 1000}

    def build_phase1_student(inputs, vocab_dir, student_config, config, out_dir: Path, hooks) -> dict:
        log("phase1", inputs)
        return train(out_dir, hooks, 2, {})

    def run_phase2(inputs, phase1_dir, task_teacher_dir, vocab_dir, config, out_dir: Path, hooks) -> dict:
        log("phase2", inputs)
        return train(out_dir, hooks, 3, {})

    def score_task_teacher(inputs, task_teacher_dir, out_dir: Path) -> dict:
        log("teacher_scores", inputs)
        return {"teacher_target_score": 0.85, "teacher_source_score": 0.9, "teacher_params": 4_000_000}

    def evaluate_student(inputs, student_dir, task_teacher_dir, teacher_scores) -> dict:
        log("evaluation", inputs)
        run = inputs.run
        score = 0.9 - abs(run.phase2.density - 0.1)
        return {
            "metric": "accuracy",
            "source_score": score,
            "target_score": score - 0.1,
            **teacher_scores,
            "retention": (score - 0.1) / teacher_scores["teacher_target_score"],
            "vocab_size": 1000,
            "student_layers": run.student.layers,
            "student_params": 1_000_000,
            "student_bytes": 4_000_000,
            "student_latency_ms": 1.0 + run.phase2.density,
            "teacher_latency_ms": 4.0,
            "speedup": 4.0 / (1.0 + run.phase2.density),
        }

    return SimpleNamespace(
        resolve_inputs=lambda run: SimpleNamespace(run=run),
        build_task_teacher=build_task_teacher,
        build_vocabulary=build_vocabulary,
        build_phase1_student=build_phase1_student,
        run_phase2=run_phase2,
        score_task_teacher=score_task_teacher,
        evaluate_student=evaluate_student,
    )


# The constant columns of a sweep's results table, for tests that write one without a sweep.
CONSTANTS = {"sweep": "s", "source_lang": "en", "teacher": "builtin:multilingual-e5-small", "task": "chatterbot"}


def fake_trial(trial_id: str, target: str, result: dict, error: str | None = None) -> SimpleNamespace:
    """What the results writer reads of a Tune trial."""
    return SimpleNamespace(trial_id=trial_id, config={"target_lang": target}, last_result=result, get_error=lambda: error)


def small_teacher(folder: Path) -> str:
    """A teacher folder that fingerprints like a real one; the fake steps never load it."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "num_hidden_layers": 4}))
    (folder / "model.safetensors").write_bytes(b"weights")
    return str(folder)


def drive(sweep_file: str, storage: str, address: str, step_log: str, resume: bool) -> None:
    """A sweep driver with the fake pipeline, for a subprocess the tests can kill."""
    from bistil_ray.orchestration.driver import run_sweep
    from bistil_ray.orchestration.paths import SweepPaths
    from bistil_ray.orchestration.sweep_config import SweepConfig

    sweep = SweepConfig.model_validate_json(Path(sweep_file).read_text())
    paths = SweepPaths(Path(storage), sweep.name)
    # Long enough for a test that polls every 0.2 s to find a trial at work: on a warm worker a fake
    # phase would otherwise be over in milliseconds.
    pipeline = fake_pipeline(Path(step_log), step_seconds=0.5)
    run_sweep(sweep, paths, resume=resume, address=address, pipeline=pipeline, live=False)
