"""Faults on a real cluster: a worker SIGKILLed in the middle of a phase (a one-worker phase's Ray task,
or a Ray Train worker) resumes the phase from its last checkpoint (its step counter does not restart
at zero) and finishes with its final metrics; a sweep whose results writer fails (a full disk) stops
with that error."""

from __future__ import annotations

import json
import os
import signal
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from storage_faults import fill_the_disk_for

from bistil_ray.atomic import TMP_PREFIX
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.sweep_config import ResourcesConfig, SweepConfig
from bistil_ray.orchestration.requests import TrainRequest, WorkerGroup
from bistil_ray.orchestration.train_runner import ray_train_env_vars, train_data_parallel, train_in_task
from bistil_ray.steps import STEP_SECONDS
from sweep_fakes import fake_pipeline, small_teacher

STEPS = 6


CHECKPOINT_EVERY = 3


# Two reports after the checkpoint of step 3: Ray Train takes a report off a worker at its next poll
# only, so the second one returns once the controller holds that checkpoint, as it would after real
# training steps; a kill right after the checkpoint's own report could lose it.
KILLED_AFTER_STEP = 5


def phase_killed_once(step_log: Path, killed: Path):
    """A training phase of STEPS steps that evaluates every step, checkpoints every CHECKPOINT_EVERY
    and resumes from `hooks.resume_from`; its first attempt SIGKILLs its own worker after reporting
    step KILLED_AFTER_STEP. Each step appends `<pid> <step>` to `step_log`. A nested function, so
    that Ray pickles it by value (its workers cannot import this module)."""

    def step(out_dir: Path, hooks) -> dict:
        resumed = json.loads((hooks.resume_from / "state.json").read_text())["step"] if hooks.resume_from else 0
        for number in range(resumed + 1, STEPS + 1):
            with open(step_log, "a") as handle:
                handle.write(f"{os.getpid()} {number}\n")
            checkpoint = None
            if number % CHECKPOINT_EVERY == 0:
                checkpoint = Path(tempfile.mkdtemp())
                (checkpoint / "state.json").write_text(json.dumps({"step": number}))
            hooks.on_evaluation({"step": number, "source_score": number / STEPS}, checkpoint)
            if number == KILLED_AFTER_STEP and not killed.exists():
                killed.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
        (out_dir / "config.json").write_text("{}")
        return {"step": STEPS, "source_score": 1.0}

    return step


def logged_steps(step_log: Path) -> list[tuple[int, int]]:
    return [tuple(int(field) for field in line.split()) for line in step_log.read_text().splitlines()]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("train", [train_in_task, train_data_parallel], ids=["task", "ray_train"])
def test_a_killed_worker_resumes_the_phase_from_its_last_checkpoint(tmp_path, cluster, train):
    import ray

    resources = ResourcesConfig(workers_per_trial=1, worker_restarts=1, report_poll_interval_s=0.2)
    step_log, killed, out_dir = tmp_path / "steps.log", tmp_path / "killed.pid", tmp_path / "student"
    out_dir.mkdir()
    ray.init(address=cluster.address, runtime_env={"env_vars": ray_train_env_vars(resources)}, log_to_driver=False)
    try:
        group = WorkerGroup.from_resources(resources)
        metrics = train(TrainRequest(phase_killed_once(step_log, killed), out_dir, tmp_path / "checkpoints", "phase2-killed", group))
    finally:
        ray.shutdown()

    steps = logged_steps(step_log)
    killed_pid = int(killed.read_text())
    first_attempt = [number for pid, number in steps if pid == killed_pid]
    second_attempt = [number for pid, number in steps if pid != killed_pid]
    assert first_attempt == [1, 2, 3, 4, 5]
    assert second_attempt == [4, 5, 6]  # from the checkpoint of step 3, not from step 1
    assert len({pid for pid, _ in steps}) == 2
    assert metrics.pop(STEP_SECONDS) > 0  # the last attempt's own time
    assert metrics == {"step": STEPS, "source_score": 1.0}
    assert (out_dir / "config.json").exists()


def pipeline_failing_at_the_first_phase() -> SimpleNamespace:
    """The fake pipeline, but its first training phase fails: the shortest way to a trial's end."""

    def build_task_teacher(inputs, config, out_dir: Path, hooks) -> dict:
        raise RuntimeError("the task data is broken")

    return SimpleNamespace(**{**vars(fake_pipeline()), "build_task_teacher": build_task_teacher})


@pytest.mark.timeout(180)
def test_a_sweep_whose_results_cannot_be_written_stops_with_the_error(tmp_path, monkeypatch, cluster):
    from ray.tune.error import TuneError

    from bistil_ray.orchestration.driver import run_sweep

    sweep = SweepConfig(
        name="full-disk",
        teacher=small_teacher(tmp_path / "teacher"),
        target_langs=["de"],
        student={"layers": 2},
        resources={"workers_per_trial": 1, "trial_retries": 0, "worker_restarts": 0, "report_poll_interval_s": 0.2},
    )
    paths = SweepPaths(tmp_path / "storage", sweep.name)
    fill_the_disk_for(monkeypatch, paths.trials_table)
    pipeline = pipeline_failing_at_the_first_phase()
    with pytest.raises(TuneError) as failed:
        run_sweep(sweep, paths, resume=False, address=cluster.address, pipeline=pipeline, live=False)
    # Tune wraps the callback's traceback: what a user reads last (the CLI exits with status 1) is the cause.
    last_line = str(failed.value).strip().splitlines()[-1]
    assert last_line == f"OSError: [Errno 28] cannot write {paths.trials_table}: No space left on device"
    assert not paths.trials_table.exists() and not list(paths.experiment.glob(f"{TMP_PREFIX}*"))
