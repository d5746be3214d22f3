"""Faults without a cluster: what a process killed at the worst moment, or storage that stops taking
writes, leaves behind.

- A process SIGKILLed while it publishes an artifact (task teacher, vocabulary, phase-1 student) or
  converts a built-in teacher: no request sees the half-written folder, and the next one rebuilds it.
- Storage that becomes full or read-only while the results tables are rewritten: the write fails
  with an error naming the table and the cause, the published table stays readable and complete,
  and no temporary file is left.

The killed processes are real (forked); the full and read-only disks are simulated at the OS calls
(`storage_faults`)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from storage_faults import fill_the_disk_for, make_read_only_for

from bistil_ray.assets import teachers
from bistil_ray.atomic import TMP_PREFIX
from bistil_ray.artifacts import MANIFEST, ArtifactStore, artifact_key
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.results import ResultsWriter, read_rows
from sweep_fakes import CONSTANTS, fake_trial

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
