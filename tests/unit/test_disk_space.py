"""A step that would start on a filesystem with less than `min_free_disk_mb` free stops with one line
naming the folder, writes nothing, damages nothing published, and a rerun continues once space is
freed. On a real small filesystem: a tmpfs of a few MiB mounted inside the test (skipped where this
process may not mount one)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import storage_faults
from test_executor import counting_pipeline, execute

from bistil_ray.artifacts import MANIFEST
from bistil_ray.config import RunConfig
from bistil_ray.output_paths import DiskSpaceError, check_free_space
from bistil_ray.steps import PHASE2_STUDENT, SHARED_STEPS

MIB = 2**20


@pytest.fixture
def small_filesystem(tmp_path: Path):
    with storage_faults.small_filesystem(tmp_path / "small", "8m") as mount_point:
        yield mount_point


def fill(folder: Path, leave_mib: float) -> Path:
    """A file that leaves about `leave_mib` MiB free on `folder`'s filesystem."""
    filler = folder / "filler"
    size = shutil.disk_usage(folder).free - int(leave_mib * MIB)
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(size, 0))
    return filler


def test_the_check_names_the_folder_and_both_amounts(tmp_path):
    with pytest.raises(DiskSpaceError, match=r"phase 2 \(x\): .* MiB free, 1073741824 MiB needed to start it") as error:
        check_free_space(tmp_path / "not" / "yet", 2**50, "phase 2 (x)")  # a pebibyte: more than any test machine has
    assert str(tmp_path) in str(error.value) and "\n" not in str(error.value)
    check_free_space(tmp_path, 0, "anything")


def test_a_run_on_a_full_disk_stops_before_writing_and_continues_once_space_is_freed(small_filesystem):
    run = RunConfig(target_lang="de", min_free_disk_mb=2)
    student = small_filesystem / "out" / "student"
    calls: list[tuple[str, int]] = []
    filler = fill(small_filesystem, leave_mib=1)
    with pytest.raises(DiskSpaceError, match=r"task teacher .*: .*small.* MiB free, 2 MiB needed"):
        execute(counting_pipeline(calls), run, small_filesystem, student)
    assert calls == [] and not list((small_filesystem / "artifacts").glob("*/*/"))  # nothing built, nothing staged

    filler.unlink()
    graph = execute(counting_pipeline(calls), run, small_filesystem, student)
    published = {step.kind: graph.built[step.kind].path for step in SHARED_STEPS}

    # The disk fills again before a new student: the shared artifacts are kept, intact and reused.
    denser = run.model_copy(update={"phase2": run.phase2.model_copy(update={"density": 0.5})})
    filler = fill(small_filesystem, leave_mib=1)
    calls.clear()
    with pytest.raises(DiskSpaceError, match="phase 2"):
        execute(counting_pipeline(calls), denser, small_filesystem, student)
    assert calls == [] and all(json.loads((path / MANIFEST).read_text()) for path in published.values())
    assert json.loads((student / MANIFEST).read_text())["key"] == graph.built[PHASE2_STUDENT.kind].key  # not replaced
    filler.unlink()
    again = execute(counting_pipeline(calls), denser, small_filesystem, student)
    assert calls == [("phase2", 1), ("phase2", 2), ("phase2", 3)]
    assert all(again.built[step.kind].cache_hit for step in SHARED_STEPS)
    assert (student / "weights").read_text() == "phase2" and not again.built[PHASE2_STUDENT.kind].cache_hit
