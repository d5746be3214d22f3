"""Where a sweep trial's time goes when it reuses every artifact: what running the method on Ray
costs beyond phase 2's own training.

Runs a small copy of the demo sweep (the demo's resources and search, its steps cut down) twice on
one fresh storage folder. The first sweep builds the task teacher, the vocabularies and the phase-1
students; the second (the same settings under another name) finds every one in the store, so each
of its trials pays only for looking them up, phase 2, the evaluation and Ray's start-ups. From the
second sweep's trials.parquet, per trial:

    beyond_phase2_s = trial_seconds - phase2_train_seconds
                    = artifact look-ups
                    + phase 2's start-up and shut-down (phase2_seconds - phase2_train_seconds)
                    + evaluation_seconds
                    + the rest (progress board, metrics, writing the result)

The evaluation is split once more, in this process on as many threads as a trial's worker has
CPUs, on the reusing sweep's first student: scoring it (source validation, target validation and
test) and timing student and teacher side by side. The trials' evaluations ran two at a time, so
what they took beyond those two is their Ray task's start (a new worker process's imports, the
task's inputs) and sharing the machine.

    .venv/bin/python -m bench.trial_overhead [--phase2-steps 40] [--trials-per-pair 3]
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import transformers

from bench.common import at_least, arguments, machine, markdown_table, median, merge_summary, timed, write_report
from bench.fixtures import demo_sweep
from bistil_ray import pipeline
from bistil_ray.artifacts import ArtifactStore
from bistil_ray.orchestration.driver import run_sweep
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.sweep_config import SweepConfig
from bistil_ray.steps import SHARED_STEPS, TASK_TEACHER

LOOKUPS = [f"{step.column}_seconds" for step in SHARED_STEPS]
HITS = [f"{step.column}_cache_hit" for step in SHARED_STEPS]


def small_demo(name: str, phase2_steps: int, trials_per_pair: int) -> SweepConfig:
    """The demo sweep with few steps: the shared steps only need to exist, phase 2 to be short."""
    sweep = demo_sweep()
    half = max(phase2_steps // 2, 1)
    return sweep.model_copy(
        update={
            "name": name,
            "trials_per_pair": trials_per_pair,
            "task_teacher": sweep.task_teacher.model_copy(update={"steps": 20, "eval_every": 20}),
            "phase1": sweep.phase1.model_copy(update={"steps": 20, "eval_every": 20}),
            "phase2": sweep.phase2.model_copy(update={"full_steps": half, "sparse_steps": half, "eval_every": half}),
        }
    )


def trial_parts(row: dict[str, Any]) -> dict[str, float]:
    lookups = sum(row[name] for name in LOOKUPS)
    phase2_start = row["phase2_seconds"] - row["phase2_train_seconds"]
    beyond = row["trial_seconds"] - row["phase2_train_seconds"]
    return {
        "trial_s": row["trial_seconds"],
        "phase2_train_s": row["phase2_train_seconds"],
        "beyond_phase2_s": beyond,
        "artifact_lookups_s": lookups,
        "phase2_start_and_finish_s": phase2_start,
        "evaluation_s": row["evaluation_seconds"],
        "rest_s": beyond - lookups - phase2_start - row["evaluation_seconds"],
    }


def evaluation_parts(sweep: SweepConfig, paths: SweepPaths, row: dict[str, Any], repeats: int) -> dict[str, float]:
    """The evaluation's scoring and its side-by-side timing, in this process (warm, no Ray)."""
    inputs = pipeline.resolve_inputs(sweep.run_config(row["target_lang"], {}))
    student = Path(row["student_path"])
    teacher_dir = ArtifactStore(paths.artifacts).path(TASK_TEACHER.kind, row[f"{TASK_TEACHER.column}_key"])
    scores = {name: row[name] for name in ("teacher_target_score", "teacher_source_score", "teacher_target_validation_score")}

    def evaluate(efficiency: bool) -> float:
        return timed(lambda: pipeline.evaluate_student(inputs, student, teacher_dir, scores, efficiency=efficiency))[1]

    torch.set_num_threads(max(1, int(sweep.resources.cpus_per_worker)))
    evaluate(False)  # untimed: first use of the data and models in this process
    scoring = median([evaluate(False) for _ in range(repeats)])
    whole = median([evaluate(True) for _ in range(repeats)])
    return {"scoring_s": scoring, "speed_timing_s": whole - scoring}


def markdown(record: dict[str, Any]) -> str:
    parts, evaluation = record["median"], record["evaluation_in_process"]
    rows = [[name.removesuffix("_s").replace("_", " "), value] for name, value in parts.items()]
    settings = record["settings"]
    return (
        "# What a trial that reuses every artifact costs beyond phase 2\n\n"
        f"A copy of the demo sweep ({settings['trials']} trials, {settings['concurrent_trials']} at a time, "
        f"{settings['cpus_per_worker']:g} CPU per worker; phase 2 {settings['phase2_steps']} steps) run on a store "
        "that a first sweep of the same settings filled: every shared artifact is a cache hit. Medians over its "
        "trials (seconds).\n\n"
        + markdown_table(["part", "seconds"], rows)
        + f"\nOf the evaluation, in this process without Ray: scoring the student {evaluation['scoring_s']:.2f} s, "
        f"timing student and teacher side by side {evaluation['speed_timing_s']:.2f} s "
        f"({record['settings']['threads']} thread(s)); the rest of the trials' {parts['evaluation_s']:.2f} s is their "
        "Ray task's start and the other trial running beside them.\n\n"
        f"**trial_beyond_phase2_s** = {record['trial_beyond_phase2_s']:.2f} s per trial.\n"
    )


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--phase2-steps", type=at_least(2), default=40, help="phase-2 steps of each trial (full + sparse)")
    parser.add_argument("--trials-per-pair", type=at_least(1), default=3, help="as the demo: later trials find warm workers")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()

    storage = Path(tempfile.mkdtemp(prefix="bistil-bench-trial-"))
    try:
        build = small_demo("overhead-build", args.phase2_steps, args.trials_per_pair)
        run_sweep(build, SweepPaths(storage, build.name), resume=False, live=False)
        reuse = small_demo("overhead-reuse", args.phase2_steps, args.trials_per_pair)
        reuse_paths = SweepPaths(storage, reuse.name)
        rows = run_sweep(reuse, reuse_paths, resume=False, live=False)
        failed = [row["trial_id"] for row in rows if row["status"] != "ok" or not all(row[name] for name in HITS)]
        if failed:
            raise SystemExit(f"bench.trial_overhead: trials {failed} failed or rebuilt an artifact; nothing written")
        per_trial = [trial_parts(row) for row in rows]
        evaluation = evaluation_parts(reuse, reuse_paths, rows[0], args.repeats)
    finally:
        shutil.rmtree(storage, ignore_errors=True)

    record = {
        "settings": {
            "trials": len(rows),
            "phase2_steps": args.phase2_steps,
            "concurrent_trials": reuse.resources.concurrent_trials,
            "cpus_per_worker": reuse.resources.cpus_per_worker,
            "workers_per_trial": reuse.resources.workers_per_trial,
            "repeats": args.repeats,
            "threads": max(1, int(reuse.resources.cpus_per_worker)),
        },
        "machine": machine(),
        "trials": per_trial,
        "median": {name: median([parts[name] for parts in per_trial]) for name in per_trial[0]},
        "evaluation_in_process": evaluation,
    }
    record["trial_beyond_phase2_s"] = record["median"]["beyond_phase2_s"]
    write_report(args.out, "trial_overhead", record, markdown(record))
    merge_summary(args.out, {"trial_beyond_phase2_s": record["trial_beyond_phase2_s"]}, "bench.trial_overhead")
    print(markdown(record))


if __name__ == "__main__":
    main()
