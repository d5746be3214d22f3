"""The sweep driver: checks, starts (or joins) Ray, runs or resumes the Tuner, returns the table."""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from bistil_ray import pipeline as bistil_pipeline
from bistil_ray.atomic import atomic_write_text, remove_stale_temporaries
from bistil_ray.console import console
from bistil_ray.errors import UserInputError
from bistil_ray.output_paths import DiskSpaceError
from bistil_ray.orchestration.full_disk import StopOnFullDisk, raise_recorded_full_disk
from bistil_ray.orchestration.live_view import LiveView, ProgressBoard, board_name
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.preflight import SweepStart, check_storage
from bistil_ray.orchestration.results import ResultsWriter, read_rows
from bistil_ray.orchestration.sweep_config import ResourcesConfig, SweepConfig
from bistil_ray.orchestration.train_runner import TRIAL_DRIVER, WorkerGroup, ray_train_env_vars
from bistil_ray.orchestration.tracking import MlflowTracking, tracking_uri
from bistil_ray.orchestration.trial import TrialContext
from bistil_ray.orchestration.tuning import build_tuner, restore_tuner
from bistil_ray.orchestration.wall_time import driver_session
from bistil_ray.steps import Fingerprints, Pipeline

NAMESPACE = "bistil_ray"
RAY_LOGGERS = ("ray", "ray.serve")  # Serve's logger has a console handler of its own and does not propagate


def run_sweep(
    sweep: SweepConfig,
    paths: SweepPaths,
    *,
    resume: bool,
    address: str | None = None,
    pipeline: Pipeline = bistil_pipeline,
    live: bool = True,
    dashboard_host: str = "127.0.0.1",
    verbose: bool = False,
) -> list[dict[str, Any]]:
    """Run the sweep (or resume it, or extend it when `trials_per_pair` was raised) to the end;
    returns the rows of `trials.parquet`."""
    started = time.time()  # the sweep's wall time includes fingerprinting and starting Ray
    sweep = sweep.with_absolute_paths()
    start = check_storage(sweep, paths, resume)
    fingerprints = Fingerprints.of(sweep, sweep.target_langs)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The outermost folder this run creates: a start refused once Ray is up leaves nothing behind.
    created = next((folder for folder in (paths.storage, paths.experiment) if not folder.exists()), None)
    try:
        with ray_messages_to(paths.ray_log, verbose=verbose):
            run_tuner(sweep, paths, start, fingerprints, started, address, pipeline, live, dashboard_host)
    except DiskSpaceError:
        raise  # met by a trial: the sweep's finished trials stay, for --resume
    except UserInputError:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    if sweep.export.onnx:
        export_best_students(paths, int8=sweep.export.int8)
    return read_rows(paths.trials_table)


def run_tuner(
    sweep: SweepConfig,
    paths: SweepPaths,
    start: SweepStart,
    fingerprints: Fingerprints,
    started: float,
    address: str | None,
    pipeline: Pipeline,
    live: bool,
    dashboard_host: str,
) -> None:
    dashboard = start_ray(sweep.resources, address, dashboard_host)
    try:
        console.print(f"{dashboard_line(dashboard)}; Ray's own messages: {paths.ray_log}")
        nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
        check_worker_fits_a_node(sweep.resources, nodes)
        concurrency = usable_concurrency(sweep.resources, ray.cluster_resources())
        check_storage_shared(paths)
        board = ProgressBoard.options(name=board_name(sweep.name)).remote()
        teacher_group = task_teacher_group(sweep.resources, concurrency, nodes)
        context = TrialContext(sweep, paths, fingerprints, pipeline, teacher_group)
        if start.mode == "resume":
            # The killed driver's half-written students are unreachable: no writer is alive now.
            if paths.students.exists():
                remove_stale_temporaries(paths.students)
            tuner = restore_tuner(paths, context)
        else:
            atomic_write_text(paths.config_snapshot, sweep.model_dump_json(indent=1))
            earlier = start.earlier_trials_per_pair
            tuner = build_tuner(sweep, paths, context, concurrency, callbacks(sweep, paths, live, earlier), earlier)
        paths.disk_full.unlink(missing_ok=True)  # the full disk that stopped the last run: space was freed
        with driver_session(paths, started):
            tuner.fit()
        ray.kill(board)
        raise_recorded_full_disk(paths.disk_full)
    finally:
        ray.shutdown()


@contextmanager
def ray_messages_to(log_file: Path, *, verbose: bool) -> Iterator[None]:
    """Ray's own messages to this process (its start-up, token authentication, Tune's hints, Serve's
    reports: the `ray` and `ray.serve` loggers) go to `log_file`; the console shows only their
    errors, unless `verbose`."""
    loggers = [logging.getLogger(name) for name in RAY_LOGGERS]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(log_file)
    levels = {handler: handler.level for logger in loggers for handler in logger.handlers}
    output_engine = os.environ.get("RAY_AIR_NEW_OUTPUT")
    if not verbose:
        for handler in levels:
            handler.setLevel(logging.ERROR)
        # Tune's newer output engine prints its start-up block (the experiment's table, where its
        # results are, a TensorBoard hint) with print(), past every logger; the older one, at the
        # sweep's verbosity 0, prints nothing.
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    for logger in loggers:
        logger.addHandler(to_file)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(to_file)
        to_file.close()
        for handler, level in levels.items():
            handler.setLevel(level)
        if output_engine is not None:
            os.environ["RAY_AIR_NEW_OUTPUT"] = output_engine
        elif os.environ.get("RAY_AIR_NEW_OUTPUT") is not None:
            del os.environ["RAY_AIR_NEW_OUTPUT"]


def export_best_students(paths: SweepPaths, *, int8: bool) -> None:
    """ONNX graphs of each pair's best student, beside it (`export.onnx`)."""
    from bistil_ray.method.onnx_export import export_onnx

    for row in read_rows(paths.summary_table):
        if row["is_best"]:
            graphs = export_onnx(Path(row["student_path"]), int8=int8)
            console.print(f"{row['source_lang']}-{row['target_lang']}: best student exported to {graphs['float32'].parent}")


def callbacks(sweep: SweepConfig, paths: SweepPaths, live: bool, earlier_trials_per_pair: int) -> list[tune.Callback]:
    constants = {
        "sweep": sweep.name,
        "source_lang": sweep.source_lang,
        "teacher": sweep.teacher,
        "task": sweep.task.name,
    }
    chosen: list[tune.Callback] = [
        ResultsWriter(paths, constants, sweep.objective.tradeoff, sweep.keep_students),
        StopOnFullDisk(paths.disk_full),
    ]
    if sweep.mlflow.enabled:
        chosen.append(MlflowTracking(tracking_uri(sweep, paths), sweep.mlflow.experiment or sweep.name, constants))
    if live:
        planned = sweep.trials_per_pair - earlier_trials_per_pair  # the trials this Tune run adds
        chosen.append(LiveView(board_name(sweep.name), sweep.source_lang, sweep.target_langs, planned))
    return chosen


def start_ray(resources: ResourcesConfig, address: str | None, dashboard_host: str) -> str | None:
    """Join `address`, or start a local cluster with one `trial_driver` slot per concurrent trial and
    its dashboard on `dashboard_host`. Returns the dashboard's URL, if it runs."""
    runtime_env = {"env_vars": ray_train_env_vars(resources)}
    if address:
        context = ray.init(address=address, namespace=NAMESPACE, runtime_env=runtime_env, log_to_driver=False)
    else:
        context = ray.init(
            namespace=NAMESPACE,
            resources={TRIAL_DRIVER: resources.concurrent_trials},
            runtime_env=runtime_env,
            log_to_driver=False,
            dashboard_host=dashboard_host,
        )
    return f"http://{context.dashboard_url}" if context.dashboard_url else None


def dashboard_line(url: str | None) -> str:
    if url is None:
        return "Ray dashboard: not running"
    # Ray sets RAY_AUTH_MODE in this process when ray.init() turned token authentication on.
    signed = os.environ.get("RAY_AUTH_MODE") == "token"
    return f"Ray dashboard: {url}" + (" (sign in with the token `ray get-auth-token` prints)" if signed else "")


@ray.remote(num_cpus=0)
def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def storage_readers(probe: Path) -> dict[str, str | None]:
    """Node address -> what a task on that node reads at `probe`, for one alive node per machine."""
    node_of_host = {node["NodeManagerAddress"]: node["NodeID"] for node in ray.nodes() if node["Alive"]}
    if len(node_of_host) < 2:
        return {}
    reads = [
        _read_text.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote(probe)
        for node_id in node_of_host.values()
    ]
    return dict(zip(node_of_host, ray.get(reads, timeout=120)))


def check_storage_shared(paths: SweepPaths) -> None:
    """On a cluster of several machines every node must see the same storage: a trial on one machine
    reads what workers and other trials write on another. A local folder is refused here rather than
    failing trials later."""
    token = uuid.uuid4().hex
    probe = paths.storage / f".probe-{token}"
    atomic_write_text(probe, token)
    try:
        blind = [host for host, seen in storage_readers(probe).items() if seen != token]
    finally:
        probe.unlink(missing_ok=True)
    if blind:
        raise UserInputError(
            f"--storage {paths.storage}: a local folder, not seen from node {', '.join(blind)}; on a cluster "
            "of several machines pass a folder every node mounts at the same path (NFS, EFS, ...)"
        )


def _how_many(available: float, need: float) -> int:
    """How many requests of `need` fit in `available` (fractional resources: no float shortfall)."""
    return math.floor(available / need + 1e-9)


def usable_concurrency(resources: ResourcesConfig, cluster: dict[str, float]) -> int:
    """Trials that can run at once without one trial's workers waiting on another's CPUs/GPUs."""
    per_trial = {**resources.per_trial(), TRIAL_DRIVER: 1.0}
    fits = {name: _how_many(cluster.get(name, 0.0), need) for name, need in per_trial.items()}
    short = [name for name, count in fits.items() if count < 1]
    if short:
        name = short[0]
        raise UserInputError(
            f"resources: a trial needs {per_trial[name]:g} {name} but the cluster has {cluster.get(name, 0):g}"
            + (f" (start its nodes with --resources='{{\"{TRIAL_DRIVER}\": N}}')" if name == TRIAL_DRIVER else "")
        )
    return min(resources.concurrent_trials, *fits.values())


def task_teacher_group(resources: ResourcesConfig, concurrency: int, nodes: list[dict[str, float]]) -> WorkerGroup:
    """The workers the task teacher trains on. It is every trial's first step, one trial builds it
    while the others wait, holding nothing: on CPUs its workers take the CPUs of all `concurrency`
    trials (as many trials' worth as the nodes can place), not one trial's share with the rest idle.
    GPU workers keep a trial's size: more GPUs would mean more workers, and so a larger batch."""
    group = WorkerGroup.from_resources(resources)
    if resources.use_gpu:
        return group
    for trials in range(concurrency, 1, -1):
        cpus = resources.cpus_per_worker * trials
        if sum(_how_many(node.get("CPU", 0.0), cpus) for node in nodes) >= group.workers:
            return replace(group, cpus_per_worker=cpus)
    return group


def check_worker_fits_a_node(resources: ResourcesConfig, nodes: list[dict[str, float]]) -> None:
    """A Train worker's CPUs and GPUs must all be on one node: a request no single node can hold
    would wait until the worker-group start time-out in every trial, however large the cluster."""
    for name, need in resources.per_worker().items():
        largest = max((node.get(name, 0.0) for node in nodes), default=0.0)
        if need > largest:
            field = "cpus_per_worker" if name == "CPU" else "gpus_per_worker"
            raise UserInputError(
                f"resources.{field}: a worker needs {need:g} {name} on one node but the largest node of the "
                f"cluster has {largest:g}"
            )
