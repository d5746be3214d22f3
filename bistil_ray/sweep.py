"""Sweep BiStil over language pairs on Ray.

    python -m bistil_ray.sweep SWEEP.yaml [--storage PATH] [--resume] [--dry-run]
                                          [--address RAY_ADDRESS | --dashboard-host HOST]
                                          [--verbose] [--set key=value ...]

Exit status: 0 when every trial finished (or was pruned), 1 when a trial or the sweep failed,
2 for invalid input (nothing is started or written then: the configuration, the teacher, the task
data, the phase-1 text, the storage and, for a local cluster, this machine's resources are all
checked before Ray starts).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from bistil_ray.console import line_buffered_output, quiet_libraries
from bistil_ray.errors import UserInputError, exit_on_user_error
from bistil_ray.artifacts import storage_root
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.plan import describe_plan
from bistil_ray.orchestration.preflight import check_inputs
from bistil_ray.orchestration.sweep_config import load_sweep

PROGRAM = "bistil_ray.sweep"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {PROGRAM}", description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="sweep YAML")
    parser.add_argument("--storage", default="results", help="a folder (or file:// URI) all nodes see; default: results")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted sweep of this name, or extend a finished one whose trials_per_pair was raised",
    )
    parser.add_argument("--dry-run", action="store_true", help="validate and print the plan; run nothing")
    parser.add_argument("--address", help="an existing Ray cluster (default: start a local one)")
    parser.add_argument(
        "--dashboard-host",
        help="where the dashboard of the local cluster listens (default: 127.0.0.1; 0.0.0.0: every interface)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="also show Ray's own messages, which otherwise go to <storage>/<sweep>/ray.log"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a YAML setting")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    line_buffered_output()
    console = Console()
    with exit_on_user_error(PROGRAM):
        sweep = load_sweep(args.config, args.set)
        quiet_libraries()  # no progress bars from the data checks: a refusal is one line
        paths = SweepPaths(storage_root(args.storage), sweep.name)
        if args.dashboard_host and args.address:
            raise UserInputError("--dashboard-host: the cluster's dashboard is set by `ray start --dashboard-host`")
        start = check_inputs(sweep, paths, resume=args.resume, dry_run=args.dry_run, local_cluster=args.address is None)
        if args.dry_run:
            print(describe_plan(sweep, paths, start))
            return 0
        from bistil_ray.orchestration.driver import run_sweep
        from bistil_ray.orchestration.live_view import summary_table
        from bistil_ray.orchestration.results import read_rows

        dashboard_host = args.dashboard_host or "127.0.0.1"
        rows = run_sweep(
            sweep,
            paths,
            resume=args.resume,
            address=args.address,
            live=True,
            dashboard_host=dashboard_host,
            verbose=args.verbose,
        )
    console.print(summary_table(rows, read_rows(paths.summary_table)))
    console.print(f"tables: {paths.trials_table}, {paths.summary_table}")
    failed = sum(row["status"] == "error" for row in rows)
    if failed:
        console.print(f"[red]{failed} of {len(rows)} trials failed; see the error column of trials.parquet")
    if len(rows) < sweep.total_trials:
        console.print(f"[red]only {len(rows)} of {sweep.total_trials} trials ended; --resume runs the rest")
    return 1 if failed or len(rows) < sweep.total_trials else 0


if __name__ == "__main__":
    raise SystemExit(main())
