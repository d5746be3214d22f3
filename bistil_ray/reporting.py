"""Questions about a finished (or running) sweep, answered from its two Parquet tables.

A results folder is a sweep's folder under `--storage` (`trials.parquet`, `summary.parquet`,
`sweep.json`), on local disk or on any object store pyarrow reads (`s3://bucket/results/demo`,
`gs://...`). The tables are loaded with pyarrow and queried in memory with DuckDB as the views
`trials` and `summary`, so no DuckDB extension (and no download) is needed for remote folders.
Nothing here starts Ray.
"""

from __future__ import annotations

import io
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from bistil_ray.atomic import atomic_write_bytes
from bistil_ray.errors import UserInputError
from bistil_ray.results_schema import SUMMARY_SCHEMA, TRIALS_SCHEMA, pareto_front
from bistil_ray.orchestration.sweep_config import ObjectiveConfig

TRADEOFFS: tuple[str, ...] = get_args(ObjectiveConfig.model_fields["tradeoff"].annotation)
DEFAULT_TRADEOFF: str = ObjectiveConfig.model_fields["tradeoff"].default
# What makes a Parquet file a results table; any other column of the schema it lacks (one added
# after its sweep ran) reads as empty.
IDENTIFYING_COLUMNS = ("trial_id", "status", "target_lang", "objective_score")

# The default report: per pair, how its trials ended and its best student by the objective.
PAIR_SUMMARY_SQL = """
WITH counts AS (
    SELECT source_lang, target_lang,
           count(*) FILTER (WHERE status = 'ok') AS ok,
           count(*) FILTER (WHERE status = 'pruned') AS pruned,
           count(*) FILTER (WHERE status = 'error') AS failed
    FROM trials GROUP BY source_lang, target_lang
), fronts AS (
    SELECT source_lang, target_lang, count(*) AS pareto FROM summary WHERE is_pareto GROUP BY ALL
), best AS (
    SELECT * FROM summary WHERE is_best
)
SELECT counts.source_lang || '-' || counts.target_lang AS pair, ok, pruned, failed,
       coalesce(pareto, 0) AS pareto, trial_id AS best_trial, student_layers AS layers, density,
       objective_score AS objective, target_score AS target, teacher_target_score AS teacher, retention,
       student_params AS params, student_latency_ms AS latency_ms, speedup
FROM counts
LEFT JOIN best USING (source_lang, target_lang)
LEFT JOIN fronts USING (source_lang, target_lang)
ORDER BY pair
"""

# What `pareto` lists of each front member besides the objective and the trade-off.
PARETO_DETAILS = ("target_score", "student_layers", "density", "student_params", "speedup", "student_path")


@dataclass(frozen=True)
class Results:
    location: str
    trials: pa.Table
    summary: pa.Table
    tradeoff: str  # the sweep's objective.tradeoff


@dataclass(frozen=True)
class Relation:
    """A query's answer: column names and rows, in order."""

    columns: list[str]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


# --- reading -------------------------------------------------------------------------------------


def open_results(location: str) -> Results:
    """The tables of the sweep folder at `location` (a local path or a URI such as s3://...)."""
    filesystem, folder = _filesystem(location)
    trials = _read_table(filesystem, folder, "trials.parquet", TRIALS_SCHEMA, location)
    summary = _read_table(filesystem, folder, "summary.parquet", SUMMARY_SCHEMA, location)
    return Results(location, trials, summary, _sweep_tradeoff(filesystem, folder, location))


def _filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    if "://" not in location:
        return pafs.LocalFileSystem(), str(Path(location).expanduser().resolve())
    try:
        filesystem, folder = pafs.FileSystem.from_uri(location)
    except (pa.ArrowException, ValueError, OSError) as error:
        raise UserInputError(f"{location}: cannot open ({_first_line(error)})") from None
    return filesystem, folder.rstrip("/")


def _read_table(filesystem: pafs.FileSystem, folder: str, name: str, schema: pa.Schema, location: str) -> pa.Table:
    path = f"{folder}/{name}"
    if filesystem.get_file_info(path).type != pafs.FileType.File:
        raise UserInputError(f"{location}: no {name} here{_sweep_folders_hint(filesystem, folder)}")
    try:
        table = pq.read_table(path, filesystem=filesystem)
    except (pa.ArrowException, OSError) as error:
        raise UserInputError(f"{location}/{name}: not a readable Parquet file ({_first_line(error)})") from None
    missing = [column for column in IDENTIFYING_COLUMNS if column not in table.column_names]
    if missing:
        raise UserInputError(f"{location}/{name}: not a bistil_ray results table (no column {missing[0]!r})")
    for field in schema:
        if field.name in table.column_names and not _same_kind(table.schema.field(field.name).type, field.type):
            raise UserInputError(
                f"{location}/{name}: column {field.name!r} holds {table.schema.field(field.name).type}, "
                f"the results schema says {field.type}"
            )
    # A column added to the schema after the sweep ran reads as empty.
    for field in schema:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table.select(schema.names).cast(schema)


def _same_kind(actual: pa.DataType, expected: pa.DataType) -> bool:
    """A column of the schema's type, or one with no values at all (Arrow's null type)."""
    return actual == expected or pa.types.is_null(actual)


def _sweep_folders_hint(filesystem: pafs.FileSystem, folder: str) -> str:
    """Given the storage root instead of a sweep's folder, name the sweeps it holds."""
    try:
        entries = filesystem.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    except (pa.ArrowException, OSError):
        return ""
    sweeps = sorted(
        entry.base_name
        for entry in entries
        if entry.type == pafs.FileType.Directory
        and filesystem.get_file_info(f"{entry.path}/trials.parquet").type == pafs.FileType.File
    )
    return f"; pass a sweep's folder: {', '.join(sweeps)}" if sweeps else "; pass a sweep's folder under --storage"


def _sweep_tradeoff(filesystem: pafs.FileSystem, folder: str, location: str) -> str:
    """The trade-off the sweep optimised against, from the configuration it started with (the
    default where a sweep folder has no sweep.json)."""
    path = f"{folder}/sweep.json"
    if filesystem.get_file_info(path).type != pafs.FileType.File:
        return DEFAULT_TRADEOFF
    try:
        with filesystem.open_input_stream(path) as stream:
            snapshot = json.loads(stream.read())
        tradeoff = snapshot.get("objective", {}).get("tradeoff", DEFAULT_TRADEOFF)
    except (pa.ArrowException, OSError, ValueError, AttributeError) as error:
        raise UserInputError(f"{location}/sweep.json: not a sweep's configuration ({_first_line(error)})") from None
    if tradeoff not in TRADEOFFS:
        raise UserInputError(f"{location}/sweep.json: objective.tradeoff {tradeoff!r} is not one of {', '.join(TRADEOFFS)}")
    return tradeoff


# --- queries -------------------------------------------------------------------------------------


def run_sql(results: Results, sql: str) -> Relation:
    """`sql` over the views `trials` and `summary`."""
    connection = duckdb.connect()
    connection.register("trials", results.trials)
    connection.register("summary", results.summary)
    try:
        cursor = connection.execute(sql)
    except duckdb.Error as error:
        raise UserInputError(f"--sql: {_first_line(error)}") from None
    if cursor.description is None:
        return Relation([], [])
    return Relation([column[0] for column in cursor.description], cursor.fetchall())


def pair_summary(results: Results) -> Relation:
    return run_sql(results, PAIR_SUMMARY_SQL)


def pareto_fronts(results: Results, tradeoff: str | None = None) -> Relation:
    """Each pair's finished trials that no other trial of the pair beats on both the objective and
    `tradeoff` (default: the sweep's), cheapest first."""
    tradeoff = tradeoff or results.tradeoff
    details = [column for column in PARETO_DETAILS if column != tradeoff]
    columns = ["pair", "trial_id", "objective_score", tradeoff, *details]
    rows = []
    for pair, finished in _finished_by_pair(results).items():
        for member in sorted(pareto_front(finished, tradeoff), key=lambda row: row[tradeoff]):
            rows.append((pair, *(member[column] for column in columns[1:])))
    return Relation(columns, rows)


def _finished_by_pair(results: Results) -> dict[str, list[dict[str, Any]]]:
    by_pair: dict[str, list[dict[str, Any]]] = {}
    for row in results.trials.to_pylist():
        if row["status"] == "ok":
            by_pair.setdefault(f"{row['source_lang']}-{row['target_lang']}", []).append(row)
    return dict(sorted(by_pair.items()))


# --- the plot ------------------------------------------------------------------------------------

# One panel per cost: (student column, teacher column, axis label, unit the column is divided by).
PLOT_COSTS = (
    ("student_latency_ms", "teacher_latency_ms", "latency, batch 1 (ms)", 1.0),
    ("student_params", "teacher_params", "parameters (millions)", 1e6),
)


def plot_tradeoffs(results: Results, path: Path) -> int:
    """Per pair (one row of panels), the target score of every finished trial against latency and
    against parameters, with the front of the plotted axes highlighted and the task teacher as the
    reference point. Writes a PNG; returns the number of trials drawn."""
    from matplotlib.figure import Figure  # the Agg canvas, without pyplot's global state

    drawn = {
        pair: [row for row in rows if row["target_score"] is not None]
        for pair, rows in _finished_by_pair(results).items()
    }
    drawn = {pair: rows for pair, rows in drawn.items() if rows}
    if not drawn:
        raise UserInputError(f"--plot: {results.location} has no finished trial with a target score yet")
    figure = Figure(figsize=(11, 3.8 * len(drawn)), layout="constrained")
    panels = figure.subplots(len(drawn), len(PLOT_COSTS), squeeze=False)
    for row_of_panels, (pair, rows) in zip(panels, drawn.items()):
        for panel, cost in zip(row_of_panels, PLOT_COSTS):
            _draw_panel(panel, pair, rows, *cost)
    figure.suptitle(f"{results.location}: target-language score against cost, per pair")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return sum(len(rows) for rows in drawn.values())


def _draw_panel(
    panel: Any, pair: str, rows: list[dict[str, Any]], cost: str, teacher_cost: str, label: str, unit: float
) -> None:
    metric = rows[0]["metric"] or "score"
    measured = [row for row in rows if row[cost] is not None]
    panel.scatter(
        [row[cost] / unit for row in measured], [row["target_score"] for row in measured], alpha=0.5, label="trial"
    )
    front = sorted(pareto_front(measured, cost, score="target_score"), key=lambda row: row[cost])
    if front:
        xs, ys = [row[cost] / unit for row in front], [row["target_score"] for row in front]
        panel.step(xs, ys, where="post", color="tab:orange", linewidth=1)
        panel.scatter(xs, ys, color="tab:orange", edgecolor="black", s=60, zorder=3, label="Pareto front")
        labels: dict[tuple[float, float], list[str]] = {}  # trials at the same point share one label
        for row in front:
            labels.setdefault((row[cost] / unit, row["target_score"]), []).append(
                f"{row['student_layers']}L d={row['density']:.2g}"
            )
        for point, names in labels.items():
            panel.annotate(", ".join(names), point, textcoords="offset points", xytext=(4, 4), fontsize=7)
    teacher = _teacher_point(rows, teacher_cost)
    if teacher is not None:
        teacher_x, teacher_y = teacher[0] / unit, teacher[1]
        panel.scatter(
            teacher_x, teacher_y, marker="*", s=220, color="tab:red", edgecolor="black", zorder=3, label="task teacher"
        )
        panel.axhline(teacher_y, color="tab:red", linestyle=":", linewidth=1)
    panel.set_xlim(left=0)  # a linear axis from zero shows how many times smaller or faster a student is
    panel.set_xlabel(label)
    panel.set_ylabel(f"target {metric}")
    panel.set_title(f"{pair}: target {metric} against {label.split(' (')[0].split(',')[0]}")
    panel.grid(True, alpha=0.3)
    panel.legend(fontsize=8, loc="best")


def _teacher_point(rows: list[dict[str, Any]], teacher_cost: str) -> tuple[float, float] | None:
    """The task teacher, measured once per trial beside each student: the median of those measurements."""
    costs = [row[teacher_cost] for row in rows if row[teacher_cost] is not None]
    scores = [row["teacher_target_score"] for row in rows if row["teacher_target_score"] is not None]
    if not costs or not scores:
        return None
    return statistics.median(costs), statistics.median(scores)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
