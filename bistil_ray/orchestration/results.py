"""The sweep's result tables, written as trials end: `trials.parquet` and `summary.parquet`.

`TRIAL_COLUMNS` is the one declaration of the trial table; the summary adds `is_best` (the pair's
best trial by the objective) and `is_pareto` (not dominated in objective against the trade-off
metric). Both tables are rewritten whole with an atomic rename after every finished, failed or
pruned trial, keyed by trial id, so a reader never sees a partial file and a resumed sweep (which
re-reads the table) lists every trial once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from ray.tune import Callback
from ray.tune.experiment import Trial

from bistil_ray.atomic import atomic_write_bytes
from bistil_ray.orchestration.paths import SweepPaths

STRING, INT, FLOAT, BOOL = pa.string(), pa.int64(), pa.float64(), pa.bool_()

TRIAL_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("sweep", STRING),
    ("trial_id", STRING),
    ("status", STRING),  # ok | pruned | error
    ("source_lang", STRING),
    ("target_lang", STRING),
    ("teacher", STRING),
    ("task", STRING),
    ("metric", STRING),
    # searched settings
    ("student_layers", INT),
    ("density", FLOAT),
    ("alpha_hidden", FLOAT),
    ("alpha_attn", FLOAT),
    ("alpha_ce", FLOAT),
    ("temperature", FLOAT),
    ("lr", FLOAT),
    ("phase1_lr", FLOAT),
    ("vocab_threshold", FLOAT),
    # scores: the objective is a validation score; target_score is the target test score
    ("vocab_size", INT),
    ("objective_score", FLOAT),
    ("target_score", FLOAT),
    ("source_score", FLOAT),
    ("teacher_target_score", FLOAT),
    ("retention", FLOAT),
    # efficiency, student against teacher on the same machine
    ("student_params", INT),
    ("teacher_params", INT),
    ("student_bytes", INT),
    ("student_latency_ms", FLOAT),
    ("teacher_latency_ms", FLOAT),
    ("speedup", FLOAT),
    # artifacts and cost
    ("task_teacher_cache_hit", BOOL),
    ("vocab_cache_hit", BOOL),
    ("phase1_cache_hit", BOOL),
    ("task_teacher_key", STRING),
    ("vocab_key", STRING),
    ("phase1_key", STRING),
    ("phase1_seconds", FLOAT),
    ("phase2_seconds", FLOAT),
    ("trial_seconds", FLOAT),
    ("student_path", STRING),
    ("error", STRING),
]
TRIALS_SCHEMA = pa.schema(TRIAL_COLUMNS)
SUMMARY_SCHEMA = TRIALS_SCHEMA.append(pa.field("is_best", BOOL)).append(pa.field("is_pareto", BOOL))


def trial_row(
    constants: dict[str, Any], trial_id: str, config: dict[str, Any], result: dict[str, Any], error: str | None
) -> dict[str, Any]:
    """One row: the sweep's constants, the trial's settings and what it reported."""
    if error is not None:
        status = "error"
    else:
        status = "ok" if result.get("completed") else "pruned"
    row = {**constants, **config, **result, "trial_id": trial_id, "status": status, "error": error}
    return {name: _as_column_type(row.get(name), kind) for name, kind in TRIAL_COLUMNS}


def _as_column_type(value: Any, kind: pa.DataType) -> Any:
    """Plain Python values of the column's type (results may hold numpy scalars or ints for floats)."""
    if value is None:
        return None
    return {STRING: str, INT: int, FLOAT: float, BOOL: bool}[kind](value)


def summary_rows(rows: list[dict[str, Any]], tradeoff: str) -> list[dict[str, Any]]:
    """Per pair, the best ok trial by the objective and the Pareto members (objective up, tradeoff down)."""
    summary = []
    for target in dict.fromkeys(row["target_lang"] for row in rows):
        done = [row for row in rows if row["target_lang"] == target and row["status"] == "ok"]
        if not done:
            continue
        best = max(done, key=lambda row: row["objective_score"])
        front = pareto_front(done, tradeoff)
        for row in done:
            if row is best or any(row is member for member in front):
                summary.append({**row, "is_best": row is best, "is_pareto": any(row is member for member in front)})
    return summary


def pareto_front(rows: list[dict[str, Any]], tradeoff: str) -> list[dict[str, Any]]:
    measured = [row for row in rows if row.get(tradeoff) is not None]

    def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
        no_worse = a["objective_score"] >= b["objective_score"] and a[tradeoff] <= b[tradeoff]
        better = a["objective_score"] > b["objective_score"] or a[tradeoff] < b[tradeoff]
        return no_worse and better

    return [row for row in measured if not any(dominates(other, row) for other in measured)]


def write_table(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def read_rows(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist() if Path(path).exists() else []


class ResultsWriter(Callback):
    """Tune callback: rewrites both tables whenever a trial finishes, fails or is pruned."""

    def __init__(self, paths: SweepPaths, constants: dict[str, Any], tradeoff: str):
        self.paths = paths
        self.constants = constants
        self.tradeoff = tradeoff

    def setup(self, **info: Any) -> None:
        self._rows = {row["trial_id"]: row for row in read_rows(self.paths.trials_table)}

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._record(trial, error=None)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._record(trial, error=_error_line(trial))

    def _record(self, trial: Trial, error: str | None) -> None:
        self._rows[trial.trial_id] = trial_row(self.constants, trial.trial_id, trial.config, trial.last_result, error)
        rows = list(self._rows.values())
        write_table(self.paths.trials_table, rows, TRIALS_SCHEMA)
        write_table(self.paths.summary_table, summary_rows(rows, self.tradeoff), SUMMARY_SCHEMA)


def _error_line(trial: Trial) -> str:
    """The last line of the trial's error (the exception itself), for the table."""
    error = trial.get_error()
    lines = [line for line in str(error).splitlines() if line.strip()] if error else []
    return lines[-1].strip()[:500] if lines else "failed"
