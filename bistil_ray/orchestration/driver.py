"""The sweep driver: checks, starts (or joins) Ray, runs or resumes the Tuner, returns the table."""

from __future__ import annotations

import json
import math
from typing import Any

import optuna
import ray
from ray import tune

from bistil_ray import pipeline as bistil_pipeline
from bistil_ray.atomic import atomic_write_text
from bistil_ray.errors import UserInputError
from bistil_ray.orchestration.live_view import LiveView, ProgressBoard, board_name
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.results import ResultsWriter, read_rows
from bistil_ray.orchestration.sweep_config import ResourcesConfig, SweepConfig
from bistil_ray.orchestration.train_runner import TRIAL_DRIVER, ray_train_env_vars
from bistil_ray.orchestration.trial import Fingerprints, TrialContext
from bistil_ray.orchestration.tuning import build_tuner, restore_tuner

NAMESPACE = "bistil_ray"


def run_sweep(
    sweep: SweepConfig,
    paths: SweepPaths,
    *,
    resume: bool,
    address: str | None = None,
    pipeline: Any = bistil_pipeline,
    live: bool = True,
) -> list[dict[str, Any]]:
    """Run the sweep (or resume it) to the end; returns the rows of `trials.parquet`."""
    sweep = sweep.with_absolute_paths()
    check_storage(sweep, paths, resume)
    fingerprints = Fingerprints.of(sweep)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start_ray(sweep.resources, address)
    try:
        concurrency = usable_concurrency(sweep.resources, ray.cluster_resources())
        board = ProgressBoard.options(name=board_name(sweep.name)).remote()
        context = TrialContext(sweep, paths, fingerprints, pipeline)
        if resume:
            tuner = restore_tuner(paths, context)
        else:
            atomic_write_text(paths.config_snapshot, sweep.model_dump_json(indent=1))
            tuner = build_tuner(sweep, paths, context, concurrency, callbacks(sweep, paths, live))
        tuner.fit()
        ray.kill(board)
    finally:
        ray.shutdown()
    return read_rows(paths.trials_table)


def callbacks(sweep: SweepConfig, paths: SweepPaths, live: bool) -> list[tune.Callback]:
    constants = {
        "sweep": sweep.name,
        "source_lang": sweep.source_lang,
        "teacher": sweep.teacher,
        "task": sweep.task.name,
    }
    writer = ResultsWriter(paths, constants, sweep.objective.tradeoff)
    if not live:
        return [writer]
    return [writer, LiveView(board_name(sweep.name), sweep.source_lang, sweep.target_langs, sweep.trials_per_pair)]


def check_storage(sweep: SweepConfig, paths: SweepPaths, resume: bool) -> None:
    """A new sweep must not overwrite an old one; a resumed one must be the sweep that started."""
    started = tune.Tuner.can_restore(str(paths.experiment))
    if not resume and started:
        raise UserInputError(
            f"{paths.experiment}: sweep '{sweep.name}' already exists; pass --resume to continue it, "
            "or choose another --storage or name"
        )
    if not resume:
        return
    if not started or not paths.config_snapshot.exists():
        raise UserInputError(f"--resume: no sweep to resume in {paths.experiment}")
    before = json.loads(paths.config_snapshot.read_text())
    now = json.loads(sweep.model_dump_json())
    changed = [key for key in now if key != "resources" and now[key] != before.get(key)]
    if changed:
        raise UserInputError(
            f"--resume: {changed[0]} differs from the sweep that started in {paths.experiment} "
            "(only resources may change on resume)"
        )


def start_ray(resources: ResourcesConfig, address: str | None) -> None:
    """Join `address`, or start a local cluster with one `trial_driver` slot per concurrent trial."""
    runtime_env = {"env_vars": ray_train_env_vars(resources)}
    if address:
        ray.init(address=address, namespace=NAMESPACE, runtime_env=runtime_env, log_to_driver=False)
    else:
        ray.init(
            namespace=NAMESPACE,
            resources={TRIAL_DRIVER: resources.concurrent_trials},
            runtime_env=runtime_env,
            log_to_driver=False,
        )


def usable_concurrency(resources: ResourcesConfig, cluster: dict[str, float]) -> int:
    """Trials that can run at once without one trial's workers waiting on another's CPUs/GPUs."""
    per_trial = {"CPU": resources.workers_per_trial * resources.cpus_per_worker, TRIAL_DRIVER: 1.0}
    if resources.use_gpu:
        per_trial["GPU"] = resources.workers_per_trial * resources.gpus_per_worker
    fits = {name: math.floor(cluster.get(name, 0.0) / need + 1e-9) for name, need in per_trial.items()}
    short = [name for name, count in fits.items() if count < 1]
    if short:
        name = short[0]
        raise UserInputError(
            f"resources: a trial needs {per_trial[name]:g} {name} but the cluster has {cluster.get(name, 0):g}"
            + (f" (start its nodes with --resources='{{\"{TRIAL_DRIVER}\": N}}')" if name == TRIAL_DRIVER else "")
        )
    return min(resources.concurrent_trials, *fits.values())
