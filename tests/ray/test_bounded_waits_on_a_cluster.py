"""Bounded waits on a real cluster: a resource request the cluster can never satisfy is refused when
the sweep starts, naming the resource; one that cannot be satisfied now fails a training phase within
the configured worker-start time-out, naming the resources."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from bistil_ray.errors import UserInputError
from bistil_ray.orchestration import train_runner
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.sweep_config import ResourcesConfig, SweepConfig
from bistil_ray.orchestration.requests import TrainRequest, WorkerGroup
from bistil_ray.orchestration.train_runner import WorkersUnavailableError, ray_train_env_vars
from sweep_fakes import small_teacher

START_TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def two_small_nodes():
    """Two nodes of 2 CPUs, no GPU; the head has the trial slots."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"trial_driver": 2}})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


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


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("train", "attempts"), [(train_runner.train_in_task, 1), (train_runner.train_data_parallel, 2)], ids=["task", "ray_train"]
)
def test_workers_that_cannot_start_now_fail_within_the_start_timeout(two_small_nodes, train, attempts):
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
            group = WorkerGroup.from_resources(resources)
            train(TrainRequest(lambda out_dir, hooks: {}, Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp()) / "run", "starved", group))
        waited = time.monotonic() - started
    finally:
        ray.shutdown()
    message = str(failed.value)
    assert "1 worker(s) of 1 CPU each could not start" in message
    assert f"worker_start_timeout_s {START_TIMEOUT_S:g}s, {attempts} attempt(s)" in message
    assert "4 CPU in all, 0 CPU free now" in message
    # One attempt of 3 s in a task, two in Ray Train (controller_failures 1) plus its own start-up;
    # without the bound it would wait forever.
    assert attempts * START_TIMEOUT_S <= waited < 60
