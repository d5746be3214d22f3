"""Faults: what a process killed at the worst moment, or storage that stops taking writes, leaves behind.

- A Ray Train worker SIGKILLed in the middle of a phase: the phase resumes from its last checkpoint
  (its step counter does not restart at zero) and finishes with its final metrics.
- A process SIGKILLed while it publishes an artifact (task teacher, vocabulary, phase-1 student) or
  converts a built-in teacher: no request sees the half-written folder, and the next one rebuilds it.
- Storage that becomes full or read-only while the results tables are rewritten: the write fails
  with an error naming the table and the cause, the published table stays readable and complete,
  no temporary file is left, and a sweep whose results writer fails stops with that error.

The killed processes are real (forked, or Ray's own workers); the full and read-only disks are
simulated at the OS calls, for the files under test only (chmod cannot make a folder unwritable to
root, as which the tests may run).
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from bistil_ray.assets import teachers
from bistil_ray.atomic import TMP_PREFIX
from bistil_ray.artifacts import MANIFEST, ArtifactStore, artifact_key
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.results import ResultsWriter, read_rows
from bistil_ray.orchestration.sweep_config import ResourcesConfig, SweepConfig
from bistil_ray.orchestration.train_runner import WorkerGroup, ray_train_env_vars, run_training
from sweep_fakes import CONSTANTS, fake_pipeline, fake_trial, small_teacher

POLL_S = 0.02
READY_TIMEOUT_S = 30.0
# A killed builder's sleep: long enough never to end on its own before the kill, short enough that a
# builder the test failed to kill does not outlive the test run for long.
BUILDER_HANGS_S = 120.0


def wait_for_file(path: Path, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout_s} s"
        time.sleep(POLL_S)


def kill(process: multiprocessing.Process) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.join(timeout=READY_TIMEOUT_S)
    assert process.exitcode == -signal.SIGKILL


def start_forked(target, *args) -> multiprocessing.Process:
    process = multiprocessing.get_context("fork").Process(target=target, args=args, daemon=True)
    process.start()
    return process


# --- a Ray Train worker killed mid-phase -------------------------------------------------------------

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


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_a_killed_train_worker_resumes_the_phase_from_its_last_checkpoint(tmp_path, cluster):
    import ray

    resources = ResourcesConfig(workers_per_trial=1, worker_restarts=1, report_poll_interval_s=0.2)
    step_log, killed, out_dir = tmp_path / "steps.log", tmp_path / "killed.pid", tmp_path / "student"
    out_dir.mkdir()
    ray.init(address=cluster.address, runtime_env={"env_vars": ray_train_env_vars(resources)}, log_to_driver=False)
    try:
        metrics = run_training(
            phase_killed_once(step_log, killed),
            out_dir,
            name="phase2-killed",
            runs_dir=tmp_path / "runs",
            group=WorkerGroup.from_resources(resources),
        )
    finally:
        ray.shutdown()

    steps = logged_steps(step_log)
    killed_pid = int(killed.read_text())
    first_attempt = [number for pid, number in steps if pid == killed_pid]
    second_attempt = [number for pid, number in steps if pid != killed_pid]
    assert first_attempt == [1, 2, 3, 4, 5]
    assert second_attempt == [4, 5, 6]  # from the checkpoint of step 3, not from step 1
    assert len({pid for pid, _ in steps}) == 2
    assert metrics == {"step": STEPS, "source_score": 1.0}
    assert (out_dir / "config.json").exists()


# --- a process killed while it publishes an artifact ---------------------------------------------------

INPUTS = {"teacher": "abc", "settings": {"steps": 10}}
PARTIAL, COMPLETE = b"half of the weights", b"all of the weights"


def build_until_killed(ready: Path):
    """A build that writes part of its folder, says so in `ready`, and then hangs until it is killed."""

    def build(out_dir: Path) -> dict:
        (out_dir / "weights.bin").write_bytes(PARTIAL)
        ready.write_text(str(os.getpid()))
        time.sleep(BUILDER_HANGS_S)
        return {}

    return build


def complete_build(out_dir: Path) -> dict:
    (out_dir / "weights.bin").write_bytes(COMPLETE)
    return {"vocab_size": 42}


@pytest.mark.parametrize("kind", ["task_teacher", "vocabulary", "phase1_student"])
def test_an_artifact_whose_builder_is_killed_is_rebuilt_by_the_next_request(tmp_path, kind):
    store = ArtifactStore(tmp_path / "artifacts", poll_interval_s=POLL_S)
    ready = tmp_path / "ready"
    builder = start_forked(store.get_or_build, kind, INPUTS, build_until_killed(ready))
    try:
        wait_for_file(ready)
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(store.get_or_build, kind, INPUTS, complete_build)
            assert store.find(kind, artifact_key(INPUTS)) is None  # the half-written folder is not published
            assert not waiting.done()  # a request for it waits on the builder, however long it takes
            kill(builder)
            rebuilt = waiting.result(timeout=READY_TIMEOUT_S)
    finally:
        if builder.is_alive():
            kill(builder)

    assert not rebuilt.cache_hit and rebuilt.metrics == {"vocab_size": 42}
    assert (rebuilt.path / "weights.bin").read_bytes() == COMPLETE
    assert json.loads((rebuilt.path / MANIFEST).read_text())["key"] == artifact_key(INPUTS)
    assert not list(rebuilt.path.parent.glob(f"{TMP_PREFIX}*"))  # the dead builder's half is gone
    later = store.get_or_build(kind, INPUTS, lambda out_dir: pytest.fail("built a third time"))
    assert later.cache_hit and (later.path / "weights.bin").read_bytes() == COMPLETE


def convert_completely(directory: Path) -> None:
    (directory / "config.json").write_text("{}")
    (directory / "model.safetensors").write_bytes(COMPLETE)


def test_a_teacher_conversion_killed_midway_is_converted_again_by_the_next_request(tmp_path, monkeypatch):
    monkeypatch.setenv("BISTIL_RAY_CACHE", str(tmp_path / "cache"))
    name = "builtin:tiny"
    ready = tmp_path / "ready"

    def convert_until_killed(directory: Path) -> None:
        (directory / "config.json").write_text("{}")
        build_until_killed(ready)(directory)

    monkeypatch.setitem(teachers.BUILTIN_TEACHERS, name, convert_until_killed)
    converter = start_forked(teachers.resolve_teacher, name)
    try:
        wait_for_file(ready)
        assert not teachers.builtin_teacher_dir(name).exists()
        kill(converter)
    finally:
        if converter.is_alive():
            kill(converter)
    assert not teachers.builtin_teacher_dir(name).exists()

    monkeypatch.setitem(teachers.BUILTIN_TEACHERS, name, convert_completely)
    converted = Path(teachers.resolve_teacher(name))
    assert converted == teachers.builtin_teacher_dir(name)
    assert (converted / "model.safetensors").read_bytes() == COMPLETE
    assert not list(converted.parent.glob(f"{TMP_PREFIX}*"))  # the killed conversion's half is gone


# --- storage that becomes full or read-only ----------------------------------------------------------


def is_staging_of(path: str | os.PathLike, table: Path) -> bool:
    """Whether `path` is a temporary file the atomic writer stages `table` in."""
    path = Path(path)
    return path.parent == table.parent and path.name.startswith(f"{TMP_PREFIX}{table.name}-")


def fill_the_disk_for(monkeypatch: pytest.MonkeyPatch, table: Path) -> None:
    """Writes of `table` fail as on a full disk: when the data is flushed to it, after the staging
    file was created."""
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        if is_staging_of(os.readlink(f"/proc/self/fd/{descriptor}"), table):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)


def make_read_only_for(monkeypatch: pytest.MonkeyPatch, table: Path) -> None:
    """Writes of `table` fail as on a file system remounted read-only: no file can be created."""
    real_open = os.open

    def open_file(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and is_staging_of(path, table):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_file)


DONE = {"objective_score": 0.8, "student_latency_ms": 2.0, "completed": True}


@pytest.mark.parametrize(
    ("break_storage", "cause"),
    [(fill_the_disk_for, "No space left on device"), (make_read_only_for, "Read-only file system")],
    ids=["full", "read_only"],
)
def test_a_table_write_on_broken_storage_names_the_table_and_keeps_the_published_one(
    tmp_path, monkeypatch, break_storage, cause
):
    paths = SweepPaths(tmp_path, "s")
    writer = ResultsWriter(paths, CONSTANTS, "student_latency_ms")
    writer.setup()
    writer.on_trial_complete(0, [], fake_trial("t1", "de", DONE))
    published = paths.trials_table.read_bytes()

    with monkeypatch.context() as broken:
        break_storage(broken, paths.trials_table)
        with pytest.raises(OSError) as failed:
            writer.on_trial_complete(0, [], fake_trial("t2", "de", DONE))
    assert f"cannot write {paths.trials_table}: {cause}" in str(failed.value)
    assert paths.trials_table.read_bytes() == published
    assert [row["trial_id"] for row in pq.read_table(paths.trials_table).to_pylist()] == ["t1"]
    assert not list(paths.experiment.glob(f"{TMP_PREFIX}*"))

    writer.on_trial_complete(0, [], fake_trial("t3", "de", DONE))  # space again: nothing was lost
    assert sorted(row["trial_id"] for row in read_rows(paths.trials_table)) == ["t1", "t2", "t3"]


def pipeline_failing_at_the_first_phase() -> SimpleNamespace:
    """The fake pipeline, but its first training phase fails: the shortest way to a trial's end."""

    def build_task_teacher(inputs, config, out_dir: Path, hooks) -> dict:
        raise RuntimeError("the task data is broken")

    return SimpleNamespace(**{**vars(fake_pipeline()), "build_task_teacher": build_task_teacher})


@pytest.mark.ray
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
