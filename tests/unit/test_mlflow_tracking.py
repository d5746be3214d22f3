"""The MLflow callback against a real local MLflow store, read back with `MlflowClient`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("mlflow", reason="MLflow is the optional `tracking` extra")
from mlflow.tracking import MlflowClient  # noqa: E402

from bistil_ray.orchestration.tracking import TRIAL_TAG, MlflowTracking  # noqa: E402

SWEEP_TAGS = {"sweep": "s", "source_lang": "en", "teacher": "t", "task": "topics"}


@dataclass
class FakeTrial:
    """What the callback reads of a Tune trial."""

    trial_id: str
    config: dict[str, Any]
    last_result: dict[str, Any] = field(default_factory=dict)


def callback(uri: str) -> MlflowTracking:
    tracking = MlflowTracking(uri, "s", SWEEP_TAGS)
    tracking.setup()
    return tracking


def test_one_run_per_trial_across_a_resumed_driver_with_each_evaluation_at_its_step(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    trial = FakeTrial("a1", {"target_lang": "de", "density": 0.1, "student_layers": 4})
    other = FakeTrial("b2", {"target_lang": "it", "density": 0.3, "student_layers": 6})
    first = callback(uri)
    first.log_trial_start(trial)
    first.log_trial_start(other)
    first.log_trial_result(1, trial, {"objective_score": 0.5, "phase2_step": 10, "pid": 7, "completed": False})
    first.log_trial_result(1, other, {"objective_score": 0.9, "phase2_step": 10})

    # The driver dies and is resumed: a new callback finds each trial's run again.
    resumed = callback(uri)
    resumed.log_trial_start(trial)
    final = {"objective_score": 0.7, "phase2_step": 20, "target_score": 0.6, "student_path": "/s/a1", "completed": True}
    trial.last_result = final
    resumed.log_trial_result(2, trial, final)
    resumed.log_trial_end(trial)
    other.last_result = {"objective_score": None, "error": "bad input"}
    resumed.log_trial_result(2, other, other.last_result)
    resumed.log_trial_end(other)

    client = MlflowClient(uri)
    [experiment] = [e for e in client.search_experiments() if e.name == "s"]
    runs = {run.data.tags[TRIAL_TAG]: run for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"a1", "b2"}
    run = runs["a1"]
    assert run.data.tags["pair"] == "en-de" and run.data.tags["student_path"] == "/s/a1"
    assert run.data.tags["sweep"] == "s" and run.info.status == "FINISHED"
    assert run.data.params == {"target_lang": "de", "density": "0.1", "student_layers": "4"}
    history = client.get_metric_history(run.info.run_id, "objective_score")
    assert [(metric.step, metric.value) for metric in history] == [(10, 0.5), (20, 0.7)]
    assert run.data.metrics["target_score"] == 0.6
    assert "pid" not in run.data.metrics and "completed" not in run.data.metrics  # Tune's keys, booleans
    # The other trial's run holds only its own values, and says why it failed.
    failed = runs["b2"]
    assert failed.info.status == "FAILED" and failed.data.tags["error"] == "bad input"
    assert [m.value for m in client.get_metric_history(failed.info.run_id, "objective_score")] == [0.9]


def test_a_pruned_trial_ends_killed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking = callback(uri)
    trial = FakeTrial("c3", {"target_lang": "de"}, {"objective_score": 0.2, "phase2_step": 5})
    tracking.log_trial_start(trial)
    tracking.log_trial_end(trial)
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("s").experiment_id])
    assert run.info.status == "KILLED"
