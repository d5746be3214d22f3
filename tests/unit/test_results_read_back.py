"""Files the results CLI reads back are checked against the results schema, as classes of cases
generated from it: every column with the wrong type, a column added after the sweep ran, and a
sweep.json that is not one or names a trade-off no table has."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bistil_ray.errors import UserInputError
from bistil_ray.orchestration.results import write_table
from bistil_ray.reporting import IDENTIFYING_COLUMNS, open_results, pareto_fronts
from bistil_ray.results_schema import SUMMARY_SCHEMA, TRIALS_SCHEMA, summary_rows, trial_row

CONSTANTS = {"sweep": "demo", "source_lang": "en", "teacher": "t", "task": "chatterbot"}
ROWS = [
    trial_row(CONSTANTS, f"t{index}", {"target_lang": "de", "student_layers": 6 - index},
              {"objective_score": 0.9 - index / 10, "student_latency_ms": 4.0 - index, "completed": True}, None)
    for index in range(3)
]  # fmt: skip


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_table(tmp_path / "trials.parquet", ROWS, TRIALS_SCHEMA)
    write_table(tmp_path / "summary.parquet", summary_rows(ROWS, "student_latency_ms"), SUMMARY_SCHEMA)
    return tmp_path


def wrong_type(kind: pa.DataType) -> tuple[pa.DataType, object]:
    """Another column type and a value of it: text where a number or flag belongs, a number for text."""
    return (pa.int64(), 7) if pa.types.is_string(kind) else (pa.string(), "0.9")


@pytest.mark.parametrize("column", TRIALS_SCHEMA.names)
def test_a_column_of_the_wrong_type_is_refused_naming_it_and_the_file(folder, column):
    table = pq.read_table(folder / "trials.parquet")
    kind, value = wrong_type(TRIALS_SCHEMA.field(column).type)
    table = table.set_column(table.column_names.index(column), pa.field(column, kind), pa.array([value] * len(ROWS), kind))
    pq.write_table(table, folder / "trials.parquet")
    with pytest.raises(UserInputError) as error:
        open_results(str(folder))
    message = str(error.value)
    assert f"trials.parquet: column {column!r} holds {kind}" in message and "\n" not in message


@pytest.mark.parametrize("column", [name for name in TRIALS_SCHEMA.names if name not in IDENTIFYING_COLUMNS])
def test_a_column_added_to_the_schema_after_the_sweep_ran_reads_as_empty(folder, column):
    table = pq.read_table(folder / "trials.parquet")
    pq.write_table(table.drop_columns([column]), folder / "trials.parquet")
    results = open_results(str(folder))
    assert results.trials.column(column).null_count == len(ROWS)


@pytest.mark.parametrize("column", IDENTIFYING_COLUMNS)
def test_a_table_without_an_identifying_column_is_not_a_results_table(folder, column):
    table = pq.read_table(folder / "trials.parquet")
    pq.write_table(table.drop_columns([column]), folder / "trials.parquet")
    with pytest.raises(UserInputError, match=f"not a bistil_ray results table \\(no column '{column}'\\)"):
        open_results(str(folder))


SNAPSHOTS = {
    "not JSON": "{objective:",
    "a list": "[1, 2]",
    "objective not a mapping": json.dumps({"objective": "fast"}),
    "a trade-off no table has": json.dumps({"objective": {"tradeoff": "no_such_column"}}),
    "a text column as trade-off": json.dumps({"objective": {"tradeoff": "teacher"}}),
}


@pytest.mark.parametrize("snapshot", SNAPSHOTS.values(), ids=SNAPSHOTS.keys())
def test_a_sweep_json_that_cannot_say_the_trade_off_is_refused_naming_it(folder, snapshot):
    (folder / "sweep.json").write_text(snapshot)
    with pytest.raises(UserInputError, match=r"sweep\.json: "):
        open_results(str(folder))


def test_the_trade_off_of_a_good_sweep_json_gives_the_front(folder):
    (folder / "sweep.json").write_text(json.dumps({"objective": {"tradeoff": "student_latency_ms"}}))
    front = pareto_fronts(open_results(str(folder)))
    assert len(front.rows) == 3
