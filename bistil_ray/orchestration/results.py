"""The sweep's result tables, written as trials end: `trials.parquet` and `summary.parquet`.

Their columns are declared once, in `bistil_ray.results_schema`; the summary adds `is_best` (the pair's best trial by the
objective) and `is_pareto` (not dominated in objective against the trade-off metric). Both tables
are rewritten whole with an atomic rename after every finished, failed or pruned trial, keyed by
trial id, so a reader never sees a partial file and a resumed sweep (which re-reads the table)
lists every trial once.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from ray.tune import Callback
from ray.tune.experiment import Trial

from bistil_ray.atomic import TMP_PREFIX, atomic_write_bytes
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.results_schema import SUMMARY_SCHEMA, TRIALS_SCHEMA, summary_rows, trial_row


def write_table(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def read_rows(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist() if Path(path).exists() else []


class ResultsWriter(Callback):
    """Tune callback: rewrites both tables whenever a trial finishes, fails or is pruned."""

    def __init__(self, paths: SweepPaths, constants: dict[str, Any], tradeoff: str, keep_students: str = "all"):
        self.paths = paths
        self.constants = constants
        self.tradeoff = tradeoff
        self.keep_students = keep_students

    def setup(self, **info: Any) -> None:
        self._rows = {row["trial_id"]: row for row in read_rows(self.paths.trials_table)}

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._record(trial, error=None)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._record(trial, error=_error_line(trial))

    def _record(self, trial: Trial, error: str | None) -> None:
        self._rows[trial.trial_id] = trial_row(self.constants, trial.trial_id, trial.config, trial.last_result, error)
        summary = summary_rows(list(self._rows.values()), self.tradeoff)
        redundant = redundant_students(list(self._rows.values()), summary, self.keep_students)
        for row in redundant:
            row["student_removed"] = True
        rows = list(self._rows.values())
        # The tables say a student is removed before it is: a reader never finds a row whose folder
        # is gone without being told, and a removal a crash interrupts is finished by the next one.
        write_table(self.paths.trials_table, rows, TRIALS_SCHEMA)
        write_table(self.paths.summary_table, summary_rows(rows, self.tradeoff), SUMMARY_SCHEMA)
        for row in (row for row in rows if row.get("student_removed")):
            remove_student(self.paths, row["trial_id"])


def redundant_students(rows: list[dict[str, Any]], summary: list[dict[str, Any]], keep: str) -> list[dict[str, Any]]:
    """The finished trials whose students `keep` lets go: those neither best nor on their pair's
    front (pareto), or not best (best). A front only moves forward, so a student let go never
    becomes one to keep again."""
    if keep == "all":
        return []
    kept = {row["trial_id"] for row in summary if row["is_best"] or (keep == "pareto" and row["is_pareto"])}
    return [row for row in rows if row["status"] == "ok" and row["trial_id"] not in kept and not row.get("student_removed")]


def remove_student(paths: SweepPaths, trial_id: str) -> None:
    """Delete a trial's student folder (a rename first, so that no half-deleted folder is left under its name)."""
    folder = paths.students / trial_id
    if not folder.exists():
        return
    doomed = folder.with_name(f"{TMP_PREFIX}removed-{trial_id}")
    folder.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _error_line(trial: Trial) -> str:
    """The last line of the trial's error (the exception itself), for the table. Read from the
    driver's own copy of the error file where there is one: the copy in storage is written later,
    after this callback."""
    local = getattr(trial, "error_file", None)
    text = Path(local).read_text(errors="replace") if local and Path(local).is_file() else str(trial.get_error() or "")
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip()[:500] if lines else "failed"
