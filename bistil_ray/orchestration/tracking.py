"""MLflow tracking of a sweep: one MLflow run per trial, written by the driver.

Ray's `MLflowLoggerCallback` does nearly this, but it logs each metric in a call of its own (one
database transaction each, dozens per result) and keys its runs by the driver's `Trial` objects, so
a resumed driver would open a second run for a trial it had already started. This callback logs a
result in one batch and finds a trial's run again by its `bistil.trial_id` tag. Trials never talk to
MLflow themselves: the driver is the only writer, so concurrent trials cannot collide in the store.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.logger import LoggerCallback
from ray.tune.result import AUTO_RESULT_KEYS

from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.sweep_config import SweepConfig
from bistil_ray.orchestration.trial import SCHEDULER_TIME

TRIAL_TAG = "bistil.trial_id"


def tracking_uri(sweep: SweepConfig, paths: SweepPaths) -> str:
    return sweep.mlflow.tracking_uri or f"sqlite:///{paths.mlflow_database}"


class MlflowTracking(LoggerCallback):
    """Tune callback: a run per trial (named after its folder) with the trial's settings as params,
    every numeric value of every report as a metric at its phase-2 step, the pair and the student's
    folder as tags, and FINISHED / KILLED (pruned) / FAILED at its end."""

    def __init__(self, uri: str, experiment: str, sweep_tags: dict[str, str]):
        self.uri = uri
        self.experiment = experiment
        self.sweep_tags = sweep_tags

    def setup(self, *args: Any, **kwargs: Any) -> None:
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):  # their set-up of a new store logs at INFO on the sweep's console
            logging.getLogger(name).setLevel(logging.WARNING)
        self._client = MlflowClient(self.uri)
        found = self._client.get_experiment_by_name(self.experiment)
        self._experiment_id = found.experiment_id if found else self._client.create_experiment(self.experiment)
        self._runs: dict[str, str] = {}  # trial id -> run id

    def _run_of(self, trial: Trial) -> str:
        if trial.trial_id not in self._runs:
            found = self._client.search_runs(
                [self._experiment_id], filter_string=f"tags.`{TRIAL_TAG}` = '{trial.trial_id}'", max_results=1
            )
            if found:
                run_id = found[0].info.run_id
            else:
                pair = f"{self.sweep_tags['source_lang']}-{trial.config['target_lang']}"
                tags = {**self.sweep_tags, TRIAL_TAG: trial.trial_id, "pair": pair}
                run_name = f"{pair} {trial.trial_id}"
                run_id = self._client.create_run(self._experiment_id, tags=tags, run_name=run_name).info.run_id
            self._runs[trial.trial_id] = run_id
        return self._runs[trial.trial_id]

    def log_trial_start(self, trial: Trial) -> None:
        from mlflow.entities import Param

        run_id = self._run_of(trial)
        logged = self._client.get_run(run_id).data.params
        params = [Param(key, str(value)) for key, value in trial.config.items() if key not in logged]
        self._client.log_batch(run_id, params=params)

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        """What the trial reported (Tune's own bookkeeping keys left out), in one batch."""
        from mlflow.entities import Metric, RunTag

        now, step = int(time.time() * 1000), int(result.get(SCHEDULER_TIME) or iteration)
        metrics = [
            Metric(key, float(value), now, step)
            for key, value in result.items()
            if key not in AUTO_RESULT_KEYS and _is_number(value)
        ]
        tags = [RunTag(key, str(result[key])) for key in ("student_path", "error") if result.get(key)]
        self._client.log_batch(self._run_of(trial), metrics=metrics, tags=tags)

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        result = trial.last_result or {}
        if failed or result.get("error"):
            status = "FAILED"
        else:
            status = "FINISHED" if result.get("completed") else "KILLED"
        self._client.set_terminated(self._run_of(trial), status=status)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
