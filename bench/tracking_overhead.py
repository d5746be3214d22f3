"""What tracking costs a sweep: the MLflow callback (`mlflow.enabled`) and Ray's TensorBoard logger
(on in every sweep), replaying the reports of the demo sweep's trials.

Both callbacks run in the sweep's driver, between Tune's steps, so the time they take is at most
what they add to the sweep's wall time. The demo sweep (sweeps/demo.yaml) has each trial report
every phase-2 evaluation and then its final row, every results column; this replays as many reports
of that shape, for as many trials, through each callback into a fresh store, and divides its time by
the demo sweep's wall time (`sweep_wall_s` in summary.json, measured by bench.sweep_reuse). With
`mlflow.enabled` false the MLflow callback is not created: it costs nothing.

    .venv/bin/python -m bench.tracking_overhead [--repeats 3]
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
from ray.train._internal.storage import StorageContext
from ray.tune import Callback, register_trainable
from ray.tune.experiment import Trial
from ray.tune.logger import TBXLoggerCallback

from bench.common import SUMMARY, alternating, arguments, machine, median, merge_summary, timed, verdict, write_report
from bistil_ray.orchestration.sweep_config import load_sweep
from bistil_ray.orchestration.tracking import MlflowTracking
from bistil_ray.orchestration.trial import OBJECTIVE, SCHEDULER_TIME
from bistil_ray.results_schema import TRIALS_SCHEMA

DEMO = Path(__file__).resolve().parents[1] / "sweeps" / "demo.yaml"


def final_report() -> dict[str, Any]:
    """A final row with a value in every results column (what a finished trial reports)."""
    def value(kind: pa.DataType) -> Any:
        if pa.types.is_boolean(kind):
            return True
        if pa.types.is_integer(kind):
            return 3
        return 0.5 if pa.types.is_floating(kind) else "x"

    return {field.name: value(field.type) for field in TRIALS_SCHEMA} | {"completed": True}


def demo_reports() -> list[dict[str, Any]]:
    """What each trial of the demo sweep reports: every phase-2 evaluation, then its final row."""
    phase2 = load_sweep(DEMO).phase2
    steps = range(phase2.eval_every, phase2.full_steps + phase2.sparse_steps + 1, phase2.eval_every)
    reports = [*({OBJECTIVE: 0.5, SCHEDULER_TIME: step} for step in steps), final_report()]
    return [{**report, "training_iteration": index + 1} for index, report in enumerate(reports)]


def demo_trials(storage: Path) -> list[Trial]:
    """As many Tune trials as the demo sweep has, in `storage`."""
    sweep = load_sweep(DEMO)
    register_trainable("replayed", lambda config: None)
    trials = []
    for index in range(sweep.total_trials):
        target = sweep.target_langs[index % len(sweep.target_langs)]
        context = StorageContext(storage_path=str(storage), experiment_dir_name="demo", trial_dir_name=f"trial{index}")
        trial = Trial("replayed", config={"target_lang": target, "density": 0.1}, trial_id=f"replay{index}", storage=context)
        trial.init_local_path()
        trials.append(trial)
    return trials


def replay(callback: Callback, trials: list[Trial], reports: list[dict[str, Any]]) -> float:
    """Seconds `callback` takes over the whole sweep's reports, set-up included."""
    def run() -> None:
        callback.setup()
        for trial in trials:
            callback.on_trial_start(0, trials, trial)
            for report in reports:
                trial.update_last_result(report)
                callback.on_trial_result(report["training_iteration"], trials, trial, report)
            callback.on_trial_complete(len(reports), trials, trial)
        callback.on_experiment_end(trials)

    return timed(run)[1]


def main() -> None:
    args = arguments(__doc__.splitlines()[0]).parse_args()
    summary = json.loads((args.out / f"{SUMMARY}.json").read_text())
    sweep_wall_s = summary["sweep_wall_s"]
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    reports, trials = demo_reports(), load_sweep(DEMO).total_trials
    with tempfile.TemporaryDirectory() as scratch:
        stores = iter(range(10**6))

        def fresh(make: Any) -> float:
            folder = Path(scratch) / f"store{next(stores)}"
            return replay(make(folder), demo_trials(folder), reports)

        measured = alternating(
            {
                "mlflow": lambda: fresh(lambda folder: MlflowTracking(f"sqlite:///{folder}/mlflow.db", "demo", {"sweep": "demo", "source_lang": "en"})),
                "tensorboard": lambda: fresh(lambda folder: TBXLoggerCallback()),
            },
            args.repeats,
        )
    ray.shutdown()
    seconds = {name: median(values) for name, values in measured.items()}
    figures = {f"tracking_overhead_{name}": value / sweep_wall_s for name, value in seconds.items()}
    record = {
        "machine": machine(),
        "trials": trials,
        "reports_per_trial": len(reports),
        "columns_in_final_report": len(reports[-1]),
        "sweep_wall_s": sweep_wall_s,
        "seconds": measured,
        **figures,
    }
    rows = "\n".join(
        f"| {name} | {seconds[name]:.2f} | {figures[f'tracking_overhead_{name}']:.2%} | {verdict(f'tracking_overhead_{name}', figures[f'tracking_overhead_{name}'])} |"
        for name in seconds
    )
    write_report(
        args.out,
        "tracking_overhead",
        record,
        f"""# What tracking costs a sweep

The demo sweep's reports replayed through each callback: {trials} trials, {len(reports)} reports each
(every phase-2 evaluation, then the final row of {len(reports[-1])} columns), into a fresh store; the
median of {args.repeats} runs, against the demo sweep's wall time of {sweep_wall_s:.0f} s (bench.sweep_reuse).

| callback | seconds | share of the sweep's wall time | target |
|---|---|---|---|
{rows}

Off by default, the MLflow callback is not created and costs nothing.
""",
    )
    merge_summary(args.out, figures, "bench.tracking_overhead")
    print((args.out / "tracking_overhead.md").read_text())


if __name__ == "__main__":
    main()
