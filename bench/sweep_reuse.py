"""How much a finished sweep saved by sharing artifacts between its trials.

Reads a sweep's results folder (default `results/demo`, what `make demo` writes; this script runs
nothing): `trials.parquet` and `driver_sessions.json`. Each trial is priced as if it had built its
own task teacher, vocabulary and phase-1 student: a trial that reused one is charged what the
artifact's builder paid for it (the `*_build_seconds` columns).

    sweep_reuse_ratio = the sweep's wall time
                        / sum over trials of (task teacher + vocabulary + phase-1 build time + phase-2 time)

The wall time is the driver's (every run of a resumed sweep, the gaps between runs excluded), so
it also holds what the denominator leaves out: each trial's evaluation and Ray start-up, and the
driver's own set-up. `sweep_reuse_ratio_whole_trials` counts those on both sides: each trial at its
whole wall time, less what it spent getting artifacts, plus what building them cost. With
concurrent trials the wall time also shrinks by running trials side by side, so the ratios then
measure sharing and concurrency together.

    sweep_reuse_floor = (the task teacher's build + sum over trials of (phase 2 + evaluation) / concurrency)
                        / the same denominator

is the least the ratio could be with everything shared that can be: every trial waits for the first
task teacher, and its own phase 2 and evaluation are never shared. A sweep whose trials are mostly
phase 2 (few trials per pair, or each trial of its own depth) cannot go below it, however well it
shares.

    .venv/bin/python -m bench.sweep_reuse [RESULTS_DIR] [--out bench/results]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import arguments, markdown_table, merge_summary, now, write_report
from bistil_ray.errors import UserInputError, exit_on_user_error
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.results import read_rows
from bistil_ray.orchestration.wall_time import sweep_wall_seconds

DEMO_RESULTS = Path(__file__).resolve().parents[1] / "results" / "demo"
# kind -> (this trial's time to get it, what building it cost); the kind prefixes its other columns
SHARED = {
    "task_teacher": ("task_teacher_seconds", "task_teacher_build_seconds"),
    "vocab": ("vocab_seconds", "vocab_build_seconds"),
    "phase1": ("phase1_seconds", "phase1_build_seconds"),
}
PRICED = [build for _, build in SHARED.values()] + ["phase2_seconds"]
WHOLE_TRIAL = [got for got, _ in SHARED.values()] + ["trial_seconds"]
OWN = ["phase2_seconds", "evaluation_seconds"]  # what no other trial can do for this one


def unshared_seconds(row: dict[str, Any]) -> float:
    """The trial's builds and phase 2, as if it had reused nothing."""
    return sum(row[name] for name in PRICED)


def unshared_whole_trial_seconds(row: dict[str, Any]) -> float:
    """The trial's whole wall time, with what it spent getting each artifact replaced by its build time."""
    return row["trial_seconds"] + sum(row[build] - row[got] for got, build in SHARED.values())


def check_priceable(rows: list[dict[str, Any]]) -> None:
    """Every trial must have finished: a pruned or failed trial spent wall time the table cannot price."""
    if not rows:
        raise UserInputError("trials.parquet: no trials")
    for row in rows:
        if row["status"] != "ok":
            raise UserInputError(
                f"trial {row['trial_id']}: status {row['status']}; only a sweep whose trials all finished can be priced"
            )
        missing = [name for name in PRICED + WHOLE_TRIAL + OWN if row.get(name) is None]
        if missing:
            raise UserInputError(
                f"trial {row['trial_id']}: no {missing[0]} (a table written before that column existed?)"
            )


def floor_seconds(rows: list[dict[str, Any]], concurrency: int) -> float:
    """The least wall time any sharing could give these trials at this concurrency."""
    own = sum(row[name] for row in rows for name in OWN)
    return max(row["task_teacher_build_seconds"] for row in rows) + own / concurrency


def reuse_figures(rows: list[dict[str, Any]], wall_seconds: float, concurrency: int) -> dict[str, float]:
    check_priceable(rows)
    unshared = sum(unshared_seconds(row) for row in rows)
    whole = sum(unshared_whole_trial_seconds(row) for row in rows)
    return {
        "sweep_reuse_ratio": wall_seconds / unshared,
        "sweep_reuse_floor": floor_seconds(rows, concurrency) / unshared,
        "sweep_reuse_ratio_whole_trials": wall_seconds / whole,
        "sweep_wall_s": wall_seconds,
        "unshared_s": unshared,
        "unshared_whole_trials_s": whole,
        "trials_s": sum(row["trial_seconds"] for row in rows),
    }


def builds(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per kind: the distinct artifacts the trials used, and how many of them this sweep built (the
    others came from an earlier sweep on the same storage, and their reuse flatters the ratio)."""
    return {
        kind: {
            "distinct": len({row[f"{kind}_key"] for row in rows}),
            "built_here": sum(not row[f"{kind}_cache_hit"] for row in rows),
        }
        for kind in SHARED
    }


def markdown(record: dict[str, Any]) -> str:
    figures = record["figures"]
    rows = [
        [
            row["trial_id"], f"{row['source_lang']}-{row['target_lang']}", row["task_teacher_cache_hit"],
            row["vocab_cache_hit"], row["phase1_cache_hit"], row["trial_seconds"], unshared_seconds(row),
            unshared_whole_trial_seconds(row),
        ]
        for row in record["trials"]
    ]
    header = ["trial", "pair", "teacher reused", "vocab reused", "phase 1 reused", "trial s", "unshared s", "unshared whole s"]
    built = ", ".join(f"{kind} {count['built_here']} of {count['distinct']}" for kind, count in record["builds"].items())
    earlier = any(count["built_here"] < count["distinct"] for count in record["builds"].values())
    return (
        f"# What sharing artifacts saved sweep '{record['sweep']}'\n\n"
        f"`{record['results_dir']}`: {len(rows)} trials, {record['concurrent_trials']} at a time. "
        f"Artifacts this sweep built, of those it used: {built}."
        + (" **Some came from an earlier sweep: the ratio credits their reuse too.**" if earlier else "")
        + "\n\n"
        + markdown_table(header, rows)
        + f"\nWall time {figures['sweep_wall_s']:.0f} s, {figures['trials_s']:.0f} s of it in trials (summed). "
        f"Without sharing: {figures['unshared_s']:.0f} s of builds and phase 2, "
        f"{figures['unshared_whole_trials_s']:.0f} s of whole trials.\n\n"
        f"**sweep_reuse_ratio** = {figures['sweep_reuse_ratio']:.3f}; counting whole trials: "
        f"{figures['sweep_reuse_ratio_whole_trials']:.3f}.\n\n"
        f"**sweep_reuse_floor** = {figures['sweep_reuse_floor']:.3f}: the ratio with everything shared that can be "
        f"(the first task teacher, then each trial's own phase 2 and evaluation, {record['concurrent_trials']} at a time).\n"
    )


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], repeated=False)
    parser.add_argument("results_dir", nargs="?", type=Path, default=DEMO_RESULTS, help="a finished sweep's folder")
    args = parser.parse_args()
    with exit_on_user_error("bench.sweep_reuse"):
        folder = args.results_dir.resolve()
        paths = SweepPaths(folder.parent, folder.name)
        if not paths.trials_table.exists():
            raise UserInputError(f"{folder}: no trials.parquet (run the sweep first: make demo)")
        rows = read_rows(paths.trials_table)
        sweep = json.loads(paths.config_snapshot.read_text())
        figures = reuse_figures(rows, sweep_wall_seconds(paths.driver_sessions), sweep["resources"]["concurrent_trials"])
    record = {
        "sweep": sweep["name"],
        "results_dir": str(folder),
        "concurrent_trials": sweep["resources"]["concurrent_trials"],
        "read_at": now(),
        "figures": figures,
        "builds": builds(rows),
        "trials": rows,
    }
    write_report(args.out, "sweep_reuse", record, markdown(record))
    merge_summary(
        args.out,
        {name: figures[name] for name in ("sweep_reuse_ratio", "sweep_reuse_ratio_whole_trials", "sweep_reuse_floor", "sweep_wall_s")},
        "bench.sweep_reuse",
    )
    print(markdown(record))


if __name__ == "__main__":
    main()
