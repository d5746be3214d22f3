"""Query a sweep's results: per-pair summary, SQL, Pareto fronts, plots.

    python -m bistil_ray.results RESULTS_DIR [--sql SQL | --pareto [--tradeoff COLUMN]]
                                             [--plot FILE.png] [--format table|csv|json]

RESULTS_DIR is a sweep's folder under --storage (results/demo), local or a URI pyarrow reads
(s3://bucket/results/demo). Without --sql or --pareto it prints the per-pair summary.
Exit status: 0 on success, 2 for invalid input (a missing folder, a bad query).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from bistil_ray.errors import exit_on_user_error
from bistil_ray.output_paths import check_output_file
from bistil_ray.reporting import TRADEOFFS, Relation, open_results, pair_summary, pareto_fronts, plot_tradeoffs, run_sql

PROGRAM = "bistil_ray.results"
FORMATS = ("table", "csv", "json")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROGRAM}",
        description=__doc__.splitlines()[0],
        epilog="Views for --sql: trials (one row per trial), summary (best and Pareto rows per pair). "
        "Every column is described in docs/reference.md.",
    )
    parser.add_argument("results_dir", metavar="RESULTS_DIR", help="a sweep's folder: results/demo, s3://bucket/...")
    query = parser.add_mutually_exclusive_group()
    query.add_argument("--sql", help="DuckDB SQL over the views trials and summary")
    query.add_argument("--pareto", action="store_true", help="each pair's Pareto front: objective against a cost")
    parser.add_argument(
        "--tradeoff", choices=TRADEOFFS, help="the cost of --pareto (default: the sweep's objective.tradeoff)"
    )
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help="draw target score against latency and size")
    parser.add_argument("--format", choices=FORMATS, default="table", help="how to print the answer (default: table)")
    args = parser.parse_args(argv)
    if args.tradeoff and not args.pareto:
        parser.error("--tradeoff applies to --pareto only")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with exit_on_user_error(PROGRAM):
        if args.plot:
            check_output_file(args.plot, "--plot")
        results = open_results(args.results_dir)
        if args.sql:
            relation, title = run_sql(results, args.sql), None
        elif args.pareto:
            tradeoff = args.tradeoff or results.tradeoff
            relation = pareto_fronts(results, tradeoff)
            title = f"Pareto front per pair: objective_score up, {tradeoff} down"
        else:
            relation, title = pair_summary(results), f"Best trial per pair by the objective ({args.results_dir})"
        if args.plot:
            drawn = plot_tradeoffs(results, args.plot)
    if args.format == "table":
        print_table(as_table(relation, title))
    else:
        sys.stdout.write(as_csv(relation) if args.format == "csv" else as_json(relation))
    if args.plot:
        print(f"plot: {args.plot} ({drawn} trials)", file=sys.stderr)
    return 0


def print_table(table: Table) -> None:
    """On a terminal, fit its width; into a pipe or file, print every column whole."""
    console = Console()
    if not console.is_terminal:
        unbounded = console.options.update_width(10_000)
        console = Console(width=console.measure(table, options=unbounded).maximum)
    console.print(table)


def as_table(relation: Relation, title: str | None) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for index, column in enumerate(relation.columns):
        text = any(isinstance(row[index], str) for row in relation.rows)
        table.add_column(column, justify="left" if text else "right")
    for row in relation.rows:
        table.add_row(*(_cell(value) for value in row))
    return table


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def as_csv(relation: Relation) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(relation.columns)
    writer.writerows([["" if value is None else value for value in row] for row in relation.rows])
    return text.getvalue()


def as_json(relation: Relation) -> str:
    """A list of objects, one per row; NaN becomes null (JSON has no NaN)."""
    records = [
        {key: None if isinstance(value, float) and math.isnan(value) else value for key, value in record.items()}
        for record in relation.records()
    ]
    return json.dumps(records, indent=1, default=str) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
