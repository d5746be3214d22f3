"""A sweep whose disk fills part-way: the trials that finished stay finished, the first trial that
meets the full disk stops at its free-space check without writing, the sweep stops with its one line,
and once space is freed `--resume` runs the rest, so that the sweep ends with every trial exactly once. On a real small filesystem: a tmpfs
mounted inside the test (skipped where this process may not mount one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.results import read_rows
from bistil_ray.output_paths import DiskSpaceError
from bistil_ray.orchestration.sweep_config import SweepConfig
from storage_faults import small_filesystem
from sweep_fakes import fake_pipeline, small_teacher


def pipeline_that_fills_the_disk(filler: Path, filled_once: Path, step_log: Path):
    """The fake pipeline; the first evaluation ever fills the storage's filesystem to 1 MiB free
    (nested functions: Ray pickles them by value)."""
    pipeline = fake_pipeline(step_log)
    evaluate = pipeline.evaluate_student

    def evaluate_student(inputs, student_dir, task_teacher_dir, teacher_scores):
        import shutil

        if not filled_once.exists():
            filled_once.touch()
            with open(filler, "wb") as handle:
                handle.write(b"\0" * (shutil.disk_usage(filler.parent).free - 2**20))
        return evaluate(inputs, student_dir, task_teacher_dir, teacher_scores)

    pipeline.evaluate_student = evaluate_student
    return pipeline


@pytest.fixture
def small_storage(tmp_path: Path):
    with small_filesystem(tmp_path / "storage", "48m") as storage:
        yield storage


@pytest.mark.timeout(600)
def test_a_sweep_that_fills_its_disk_loses_no_trial_and_resumes_to_every_trial_once(
    tmp_path, small_storage, cluster, monkeypatch
):
    from bistil_ray.orchestration.driver import run_sweep

    # No periodic save of Tune's experiment state comes in time: the stop itself must save it, or
    # --resume would not know the trial that met the disk.
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "10000")

    sweep = SweepConfig(
        name="full-disk",
        teacher=small_teacher(tmp_path / "teacher"),
        target_langs=["de", "fr"],
        student={"layers": 2},
        phase2={"full_steps": 2, "sparse_steps": 1},
        trials_per_pair=2,
        min_free_disk_mb=4,
        resources={"workers_per_trial": 1, "concurrent_trials": 1, "trial_retries": 0, "report_poll_interval_s": 0.2},
    )
    paths = SweepPaths(small_storage, sweep.name)
    filler, step_log = small_storage / "filler", tmp_path / "steps.log"
    pipeline = pipeline_that_fills_the_disk(filler, tmp_path / "filled-once", step_log)

    with pytest.raises(DiskSpaceError) as stopped:
        run_sweep(sweep, paths, resume=False, address=cluster.address, pipeline=pipeline, live=False)
    message = str(stopped.value)
    assert "MiB free, 4 MiB needed to start it (min_free_disk_mb)" in message and str(small_storage) in message
    assert "\n" not in message and not paths.disk_full.exists()
    first = read_rows(paths.trials_table)
    done_first = {row["trial_id"] for row in first if row["status"] == "ok"}
    failed = [row for row in first if row["status"] == "error"]
    # One at a time: the first trial filled the disk, the second met it, and no other trial started.
    assert len(done_first) == 1 and len(failed) == 1, [row["error"] for row in failed]
    evaluations_before = step_log.read_text().count("evaluation")

    filler.unlink()
    rows = run_sweep(sweep, paths, resume=True, address=cluster.address, pipeline=pipeline, live=False)
    assert sorted(row["status"] for row in rows) == ["ok"] * 4
    # The trial that met the full disk ran again under its own id: Tune saved its state on the way out.
    assert {row["trial_id"] for row in rows} >= done_first | {failed[0]["trial_id"]}
    assert step_log.read_text().count("evaluation") == evaluations_before + 3  # the finished trial is not run again
