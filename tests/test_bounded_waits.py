"""Bounded waits: a resource request the cluster can never satisfy is refused when the sweep starts,
naming the resource; one that cannot be satisfied now fails a training phase within the configured
worker-start time-out, naming the resources; every retry is bounded by the configuration."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from bistil_ray.errors import UserInputError
from bistil_ray.orchestration import train_runner
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.preflight import check_fits_machine
from bistil_ray.orchestration.sweep_config import ResourcesConfig, SweepConfig
from bistil_ray.orchestration.train_runner import WorkerGroup, WorkersUnavailableError, ray_train_env_vars
from sweep_fakes import small_teacher

START_TIMEOUT_S = 3.0


def test_a_trial_larger_than_this_machine_is_refused_naming_the_resource():
    gpus = ResourcesConfig(workers_per_trial=2, use_gpu=True, gpus_per_worker=1)
    with pytest.raises(UserInputError, match=r"resources: a trial needs 2 GPU \(workers_per_trial x gpus_per_worker\)"):
        check_fits_machine(gpus, {"CPU": 16.0, "GPU": 1.0})
    with pytest.raises(UserInputError, match=r"a trial needs 6 CPU .* but this machine has 4"):
        check_fits_machine(ResourcesConfig(workers_per_trial=2, cpus_per_worker=3), {"CPU": 4.0, "GPU": 0.0})
    check_fits_machine(ResourcesConfig(workers_per_trial=2, cpus_per_worker=2), {"CPU": 4.0, "GPU": 0.0})


@pytest.fixture
def recorded_training(monkeypatch, tmp_path):
    """`run_training` without Ray: the TorchTrainer's arguments and what went into the object store."""
    recorded = {"trainer": {}, "put": []}

    class RecordingTrainer:
        def __init__(self, *args, **kwargs):
            recorded["trainer"].update(kwargs)

        def fit(self):
            (tmp_path / train_runner.STEP_METRICS).write_text("{}")

    monkeypatch.setattr(train_runner, "TorchTrainer", RecordingTrainer)
    monkeypatch.setattr(train_runner.ray, "put", lambda value: recorded["put"].append(value) or "reference")
    return recorded


def test_start_timeout_and_failure_limits_reach_ray_train(recorded_training, tmp_path):
    resources = ResourcesConfig(worker_start_timeout_s=7, worker_restarts=2, controller_failures=1)
    assert ray_train_env_vars(resources)["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] == "7.0"
    group = WorkerGroup.from_resources(resources)
    train_runner.run_training(lambda out_dir, hooks: {}, tmp_path, name="run", runs_dir=tmp_path, group=group)
    failure = recorded_training["trainer"]["run_config"].failure_config
    # -1 would mean forever: Ray Train's default for controller failures.
    assert (failure.max_failures, failure.controller_failure_limit) == (2, 1)


def test_the_trainer_carries_only_a_reference_to_the_work(recorded_training, tmp_path):
    """The Train controller unpickles the trainer: a step inside it would make the controller import
    torch, transformers and the method (bench/ray_fixed_cost.py measured 3 s of every phase)."""

    def step(out_dir, hooks):
        return {}

    group = WorkerGroup.from_resources(ResourcesConfig())
    train_runner.run_training(step, tmp_path, name="run", runs_dir=tmp_path, group=group)
    put = recorded_training["put"]
    assert recorded_training["trainer"]["train_loop_config"] == {"work": "reference"}
    assert len(put) == 1 and put[0]["step"] is step and put[0]["out_dir"] == tmp_path


@pytest.fixture(scope="module")
def two_small_nodes():
    """Two nodes of 2 CPUs, no GPU; the head has the trial slots."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"trial_driver": 2}})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


@pytest.mark.ray
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (
            {"cpus_per_worker": 3},  # 4 CPUs in the cluster, but a worker's must be on one node
            "resources.cpus_per_worker: a worker needs 3 CPU on one node but the largest node of the cluster has 2",
        ),
        ({"use_gpu": True}, "resources.gpus_per_worker: a worker needs 1 GPU on one node but the largest node"),
    ],
    ids=["cpus_on_one_node", "gpu"],
)
def test_a_request_the_cluster_can_never_satisfy_is_refused_at_start(tmp_path, two_small_nodes, resources, message):
    from bistil_ray.orchestration.driver import run_sweep

    sweep = SweepConfig(
        name="starved", teacher=small_teacher(tmp_path / "teacher"), target_langs=["de"], student={"layers": 2},
        resources=resources,
    )
    storage = tmp_path / "storage"
    with pytest.raises(UserInputError, match=message):
        run_sweep(sweep, SweepPaths(storage, sweep.name), resume=False, address=two_small_nodes.address, live=False)
    assert not storage.exists()


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_workers_that_cannot_start_now_fail_within_the_start_timeout(two_small_nodes):
    import ray

    resources = ResourcesConfig(worker_start_timeout_s=START_TIMEOUT_S, controller_failures=1)
    ray.init(address=two_small_nodes.address, runtime_env={"env_vars": ray_train_env_vars(resources)})

    @ray.remote(num_cpus=2)
    class CpuHolder:
        def ready(self) -> bool:
            return True

    holders = [CpuHolder.remote() for _ in range(2)]  # every CPU of both nodes
    try:
        ray.get([holder.ready.remote() for holder in holders])
        started = time.monotonic()
        with pytest.raises(WorkersUnavailableError) as failed:
            train_runner.run_training(
                lambda out_dir, hooks: {},
                Path(tempfile.mkdtemp()),
                name="starved",
                runs_dir=Path(tempfile.mkdtemp()),
                group=WorkerGroup.from_resources(resources),
            )
        waited = time.monotonic() - started
    finally:
        ray.shutdown()
    message = str(failed.value)
    assert "1 Ray Train worker(s) of 1 CPU each could not start" in message
    assert f"worker_start_timeout_s {START_TIMEOUT_S:g}s, 2 attempt(s)" in message
    assert "4 CPU in all, 0 CPU free now" in message
    # Two attempts of 3 s each, plus Ray Train's own start-up; without the bound it would wait forever.
    assert 2 * START_TIMEOUT_S <= waited < 60
