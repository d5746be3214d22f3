"""Bounded waits without a cluster: a trial larger than this machine is refused naming the resource,
and the start time-out and failure limits reach Ray Train's configuration."""

from __future__ import annotations


import pytest

from bistil_ray.errors import UserInputError
from bistil_ray.orchestration import train_runner
from bistil_ray.orchestration.preflight import check_fits_machine
from bistil_ray.orchestration.sweep_config import ResourcesConfig
from bistil_ray.orchestration.requests import TrainRequest, WorkerGroup
from bistil_ray.orchestration.train_runner import ray_train_env_vars
from bistil_ray.orchestration.worker import STEP_METRICS

def test_a_trial_larger_than_this_machine_is_refused_naming_the_resource():
    gpus = ResourcesConfig(workers_per_trial=2, use_gpu=True, gpus_per_worker=1)
    with pytest.raises(UserInputError, match=r"resources: a trial needs 2 GPU \(workers_per_trial x gpus_per_worker\)"):
        check_fits_machine(gpus, {"CPU": 16.0, "GPU": 1.0})
    with pytest.raises(UserInputError, match=r"a trial needs 6 CPU .* but this machine has 4"):
        check_fits_machine(ResourcesConfig(workers_per_trial=2, cpus_per_worker=3), {"CPU": 4.0, "GPU": 0.0})
    check_fits_machine(ResourcesConfig(workers_per_trial=2, cpus_per_worker=2), {"CPU": 4.0, "GPU": 0.0})


@pytest.fixture
def recorded_training(monkeypatch, tmp_path):
    """`train_data_parallel` without Ray: the TorchTrainer's arguments and what went into the object store."""
    recorded = {"trainer": {}, "put": []}

    class RecordingTrainer:
        def __init__(self, *args, **kwargs):
            recorded["trainer"].update(kwargs)

        def fit(self):
            (tmp_path / STEP_METRICS).write_text("{}")

    monkeypatch.setattr(train_runner, "TorchTrainer", RecordingTrainer)
    monkeypatch.setattr(train_runner.ray, "put", lambda value: recorded["put"].append(value) or "reference")
    return recorded


def test_start_timeout_and_failure_limits_reach_ray_train(recorded_training, tmp_path):
    resources = ResourcesConfig(worker_start_timeout_s=7, worker_restarts=2, controller_failures=1)
    assert ray_train_env_vars(resources)["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] == "7.0"
    group = WorkerGroup.from_resources(resources)
    train_runner.train_data_parallel(TrainRequest(lambda out_dir, hooks: {}, tmp_path, tmp_path / "run", "run", group))
    failure = recorded_training["trainer"]["run_config"].failure_config
    # -1 would mean forever: Ray Train's default for controller failures.
    assert (failure.max_failures, failure.controller_failure_limit) == (2, 1)


def test_the_trainer_carries_only_a_reference_to_the_work(recorded_training, tmp_path):
    """The Train controller unpickles the trainer: a step inside it would make the controller import
    torch, transformers and the method (bench/ray_fixed_cost.py measured 3 s of every phase)."""

    def step(out_dir, hooks):
        return {}

    group = WorkerGroup.from_resources(ResourcesConfig())
    train_runner.train_data_parallel(TrainRequest(step, tmp_path, tmp_path / "run", "run", group))
    put = recorded_training["put"]
    assert recorded_training["trainer"]["train_loop_config"] == {"request": "reference"}
    assert len(put) == 1 and put[0].step is step and put[0].out_dir == tmp_path
