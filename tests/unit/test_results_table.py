"""trials.parquet and summary.parquet: one declared schema, atomic rewrites, dedup by trial id."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sweep_fakes import CONSTANTS, fake_trial

from bistil_ray.atomic import TMP_PREFIX
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.results import ResultsWriter, read_rows, write_table
from bistil_ray.results_schema import SUMMARY_SCHEMA, TRIAL_COLUMNS, TRIALS_SCHEMA, summary_rows, trial_row

ISSUE_COLUMNS = (
    "sweep trial_id status source_lang target_lang teacher task metric student_layers density alpha_hidden "
    "alpha_attn alpha_ce temperature lr vocab_threshold vocab_size objective_score target_score source_score "
    "teacher_target_score retention student_params teacher_params student_bytes student_latency_ms "
    "teacher_latency_ms speedup phase1_cache_hit phase1_seconds phase2_seconds trial_seconds student_path"
).split()
# What bench/sweep_reuse.py needs to price every trial as if it had shared nothing.
REUSE_COLUMNS = "task_teacher_build_seconds vocab_build_seconds phase1_build_seconds task_teacher_seconds vocab_seconds".split()


def finished(trial_id: str, target: str, score: float, latency: float, **extra) -> dict:
    config = {"target_lang": target, "student_layers": 6, "density": 0.1}
    result = {"objective_score": score, "student_latency_ms": latency, "phase1_cache_hit": True, "completed": True}
    result.update(extra)
    return trial_row(CONSTANTS, trial_id, config, result, error=None)


def test_rows_have_exactly_the_declared_columns_and_the_issue_asks_for_all_of_them():
    names = [name for name, _ in TRIAL_COLUMNS]
    assert set(ISSUE_COLUMNS + REUSE_COLUMNS) <= set(names) and len(names) == len(set(names))
    row = finished("t1", "de", 0.8, 3.0, target_score=0.7, unexpected_key=1)
    assert list(row) == names
    assert row["status"] == "ok" and row["sweep"] == "s" and row["target_score"] == 0.7


def test_status_distinguishes_finished_pruned_and_failed():
    config = {"target_lang": "de"}
    assert trial_row(CONSTANTS, "a", config, {"objective_score": 0.3, "phase2_step": 100}, None)["status"] == "pruned"
    failed = trial_row(CONSTANTS, "b", config, {}, "RuntimeError: worker died")
    assert failed["status"] == "error" and failed["error"] == "RuntimeError: worker died"


def test_values_are_coerced_to_the_column_types():
    row = finished("t1", "de", 1, 3, student_params=12.0, vocab_size="5000")
    assert isinstance(row["objective_score"], float) and row["student_params"] == 12 and row["vocab_size"] == 5000


def test_written_table_has_the_declared_schema_and_reads_without_this_package(tmp_path):
    path = tmp_path / "trials.parquet"
    write_table(path, [finished("t1", "de", 0.8, 3.0), finished("t2", "fr", 0.6, 2.0)], TRIALS_SCHEMA)
    assert pq.read_schema(path).equals(TRIALS_SCHEMA)
    best = duckdb.sql(f"select trial_id from '{path}' order by objective_score desc limit 1").fetchall()
    assert best == [("t1",)]


def test_a_failed_rewrite_leaves_the_previous_table_intact(tmp_path):
    path = tmp_path / "trials.parquet"
    write_table(path, [finished("t1", "de", 0.8, 3.0)], TRIALS_SCHEMA)
    broken = {**finished("t2", "de", 0.5, 1.0), "objective_score": "not a number"}
    with pytest.raises(pa.ArrowException):
        write_table(path, [finished("t1", "de", 0.8, 3.0), broken], TRIALS_SCHEMA)
    assert [row["trial_id"] for row in read_rows(path)] == ["t1"]
    assert not list(tmp_path.glob(f"{TMP_PREFIX}*"))


def test_summary_has_the_best_trial_and_the_pareto_members_per_pair():
    rows = [
        finished("slow-best", "de", 0.90, 10.0),
        finished("fast-good", "de", 0.85, 4.0),
        finished("dominated", "de", 0.80, 5.0),
        finished("fastest", "de", 0.50, 1.0),
        finished("only-fr", "fr", 0.70, 3.0),
        trial_row(CONSTANTS, "broken", {"target_lang": "de"}, {}, "boom"),
    ]
    summary = {row["trial_id"]: row for row in summary_rows(rows, "student_latency_ms")}
    assert set(summary) == {"slow-best", "fast-good", "fastest", "only-fr"}
    assert summary["slow-best"]["is_best"] and summary["slow-best"]["is_pareto"]
    assert summary["fast-good"]["is_pareto"] and not summary["fast-good"]["is_best"]
    assert summary["only-fr"]["is_best"]
    pa.Table.from_pylist(list(summary.values()), schema=SUMMARY_SCHEMA)


def test_writer_keeps_one_row_per_trial_across_retries_and_resumes(tmp_path):
    paths = SweepPaths(tmp_path, "s")
    writer = ResultsWriter(paths, CONSTANTS, "student_latency_ms")
    writer.setup()
    writer.on_trial_error(0, [], fake_trial("t1", "de", {}, "Traceback ...\nRuntimeError: worker died"))
    assert read_rows(paths.trials_table)[0]["error"] == "RuntimeError: worker died"
    done = {"objective_score": 0.8, "student_latency_ms": 2.0, "completed": True}
    writer.on_trial_complete(0, [], fake_trial("t1", "de", done))
    resumed = ResultsWriter(paths, CONSTANTS, "student_latency_ms")
    resumed.setup()
    resumed.on_trial_complete(0, [], fake_trial("t2", "de", {**done, "objective_score": 0.9}))
    rows = read_rows(paths.trials_table)
    assert sorted((row["trial_id"], row["status"]) for row in rows) == [("t1", "ok"), ("t2", "ok")]
    assert [row["trial_id"] for row in read_rows(paths.summary_table) if row["is_best"]] == ["t2"]
    assert not list(Path(paths.experiment).glob(f"{TMP_PREFIX}*"))


@pytest.mark.parametrize(
    ("keep", "kept"),
    [("all", {"a", "b", "c", "d"}), ("pareto", {"a", "b", "d"}), ("best", {"a"})],
)
def test_keep_students_removes_a_student_once_its_pairs_front_moves_past_it_and_its_row_says_so(tmp_path, keep, kept):
    paths = SweepPaths(tmp_path, "s")
    writer = ResultsWriter(paths, CONSTANTS, "student_latency_ms", keep)
    writer.setup()
    # (objective, latency), in finishing order: c is on the front until b (better and faster) comes;
    # a is the best, d the fastest; the front ends as a, b, d.
    trials = {"c": (0.70, 3.0), "a": (0.90, 4.0), "b": (0.80, 2.0), "d": (0.60, 1.0)}
    for trial_id, (score, latency) in trials.items():
        (paths.students / trial_id).mkdir(parents=True)
        (paths.students / trial_id / "model.safetensors").write_text("weights")
        result = {"objective_score": score, "student_latency_ms": latency, "completed": True}
        writer.on_trial_complete(0, [], fake_trial(trial_id, "de", result))
    assert {path.name for path in paths.students.iterdir()} == kept  # no staging leftovers either
    rows = {row["trial_id"]: row for row in read_rows(paths.trials_table)}
    assert set(rows) == set(trials)  # every row stays
    assert {trial_id for trial_id, row in rows.items() if not row["student_removed"]} == kept
    summary = read_rows(paths.summary_table)
    assert {row["trial_id"] for row in summary if row["is_best"]} == {"a"}


def test_keep_students_leaves_pruned_and_failed_trials_and_the_other_pairs_alone(tmp_path):
    paths = SweepPaths(tmp_path, "s")
    writer = ResultsWriter(paths, CONSTANTS, "student_latency_ms", "best")
    writer.setup()
    for trial_id, target, score in (("de1", "de", 0.9), ("fr1", "fr", 0.5), ("de2", "de", 0.4)):
        (paths.students / trial_id).mkdir(parents=True)
        writer.on_trial_complete(0, [], fake_trial(trial_id, target, {"objective_score": score, "student_latency_ms": 1.0, "completed": True}))
    writer.on_trial_complete(0, [], fake_trial("pruned", "de", {"objective_score": 0.95}))
    writer.on_trial_error(0, [], fake_trial("failed", "de", {}, error="RuntimeError: boom"))
    assert {path.name for path in paths.students.iterdir()} == {"de1", "fr1"}
    rows = {row["trial_id"]: row for row in read_rows(paths.trials_table)}
    assert [rows[name]["student_removed"] for name in ("de1", "fr1", "de2", "pruned", "failed")] == [False, False, True, False, False]
