"""Which failures a sweep retries: one sweep, one injected failure per pair, attempts counted.

- de: the evaluation raises KeyError (the trial's own code): the trial ends at once, status error;
- fr: phase 2 raises a shape-mismatch RuntimeError in its Train worker: the worker group is not
  trained again and the trial ends at once;
- it: phase 2's worker is SIGKILLed on the first attempt (a process death): retried, and finishes;
- es: phase 2 raises MemoryError on the first attempt (out of memory): retried, and finishes.

Ray Train restarts nothing here (`worker_restarts: 0`), so each retry is one of Tune's, of the
same trial id; every phase-2 attempt appends a line to a log.
"""

from __future__ import annotations

import pytest

from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.sweep_config import SweepConfig
from sweep_fakes import fake_pipeline, small_teacher


def injecting_pipeline(attempts_log, markers):
    """The fake pipeline with one failure per target language (nested functions: pickled by value)."""
    pipeline = fake_pipeline()
    phase2, evaluate = pipeline.run_phase2, pipeline.evaluate_student

    def run_phase2(inputs, phase1_dir, task_teacher_dir, vocab_dir, config, out_dir, hooks):
        import os
        import signal

        run = inputs.run
        with open(attempts_log, "a") as handle:
            handle.write(f"phase2 {run.target_lang}\n")
        first = not (markers / run.target_lang).exists()
        (markers / run.target_lang).touch()
        if run.target_lang == "fr":
            raise RuntimeError("size mismatch for classifier.weight: copying a param with shape [3, 32]")
        if run.target_lang == "it" and first:
            os.kill(os.getpid(), signal.SIGKILL)
        if run.target_lang == "es" and first:
            raise MemoryError("out of memory")
        return phase2(inputs, phase1_dir, task_teacher_dir, vocab_dir, config, out_dir, hooks)

    def evaluate_student(inputs, student_dir, task_teacher_dir, teacher_scores):
        run = inputs.run
        with open(attempts_log, "a") as handle:
            handle.write(f"evaluation {run.target_lang}\n")
        if run.target_lang == "de":
            return {}["target_score"]
        return evaluate(inputs, student_dir, task_teacher_dir, teacher_scores)

    pipeline.run_phase2, pipeline.evaluate_student = run_phase2, evaluate_student
    return pipeline


@pytest.mark.timeout(600)
def test_only_failures_a_retry_can_change_are_retried(tmp_path, cluster):
    from bistil_ray.orchestration.driver import run_sweep

    markers = tmp_path / "markers"
    markers.mkdir()
    attempts_log = tmp_path / "attempts.log"
    sweep = SweepConfig(
        name="failures",
        teacher=small_teacher(tmp_path / "teacher"),
        target_langs=["de", "fr", "it", "es"],
        student={"layers": 2},
        phase2={"full_steps": 2, "sparse_steps": 1},
        trials_per_pair=1,
        resources={
            "workers_per_trial": 1,
            "concurrent_trials": 2,
            "trial_retries": 2,
            "worker_restarts": 0,
            "report_poll_interval_s": 0.2,
        },
    )
    paths = SweepPaths(tmp_path / "storage", sweep.name)
    pipeline = injecting_pipeline(attempts_log, markers)
    rows = {row["target_lang"]: row for row in run_sweep(sweep, paths, resume=False, address=cluster.address, pipeline=pipeline, live=False)}

    attempts = attempts_log.read_text().splitlines()
    counted = {lang: (attempts.count(f"phase2 {lang}"), attempts.count(f"evaluation {lang}")) for lang in rows}
    print("attempts (phase 2, evaluation):", counted)
    assert counted == {"de": (1, 1), "fr": (1, 0), "it": (2, 1), "es": (2, 1)}
    assert rows["de"]["status"] == "error" and rows["de"]["error"] == "KeyError: 'target_score'"
    assert rows["fr"]["status"] == "error"
    assert rows["fr"]["error"] == "phase2: RuntimeError: size mismatch for classifier.weight: copying a param with shape [3, 32]"
    assert rows["it"]["status"] == rows["es"]["status"] == "ok"
    # Optuna counts the two deterministic failures as failed trials, not as pruned or complete ones.
    import pickle

    import optuna

    state = pickle.loads(next(paths.experiment.glob("searcher-state-*.pkl")).read_bytes())
    states = {lang: [trial.state for trial in search._ot_study.trials] for lang, search in state["studies"].items()}
    assert states["de"] == states["fr"] == [optuna.trial.TrialState.FAIL]
    assert states["it"] == states["es"] == [optuna.trial.TrialState.COMPLETE]
