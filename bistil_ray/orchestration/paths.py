"""Where a sweep keeps things under `--storage` (a local folder, or one every node mounts).

    <storage>/artifacts/<kind>/<key>/       built once, shared by every trial, pair and later sweep
    <storage>/artifacts/<kind>/.checkpoints/<key>  checkpoints of an artifact being built (by a trial or a run)
    <storage>/<sweep>/                      the Tune experiment (what --resume restores)
    <storage>/<sweep>/sweep.json            the validated configuration the sweep started with
    <storage>/<sweep>/trials.parquet        one row per finished, failed or pruned trial
    <storage>/<sweep>/summary.parquet       per pair: the best trial and the Pareto members
    <storage>/<sweep>/driver_sessions.json  when each run of the driver (the start, each --resume) began and ended
    <storage>/<sweep>/students/<trial_id>/  each trial's student, a Hugging Face model directory
    <storage>/<sweep>/results/<trial_id>.json  each finished trial's final result
    <storage>/<sweep>/disk_full.txt         while a trial that met a full disk stops the sweep: its reason
    <storage>/<sweep>/students/.checkpoints/<trial_id>  checkpoints of a trial's phase 2
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bistil_ray.artifacts import ARTIFACTS


@dataclass(frozen=True)
class SweepPaths:
    storage: Path
    sweep: str

    @property
    def artifacts(self) -> Path:
        return self.storage / ARTIFACTS

    @property
    def experiment(self) -> Path:
        return self.storage / self.sweep

    @property
    def config_snapshot(self) -> Path:
        return self.experiment / "sweep.json"

    @property
    def optuna_journal(self) -> Path:
        """Every pair's Optuna study, in Optuna's own journal storage: `optuna-dashboard` opens it."""
        return self.experiment / "optuna.journal"

    @property
    def ray_log(self) -> Path:
        """Ray's own messages to the driver (its start-up, token authentication, Tune's hints)."""
        return self.experiment / "ray.log"

    @property
    def mlflow_database(self) -> Path:
        """The default MLflow store: `mlflow ui --backend-store-uri sqlite:///<this file>` opens it."""
        return self.experiment / "mlflow.db"

    @property
    def trials_table(self) -> Path:
        return self.experiment / "trials.parquet"

    @property
    def summary_table(self) -> Path:
        return self.experiment / "summary.parquet"

    @property
    def driver_sessions(self) -> Path:
        return self.experiment / "driver_sessions.json"

    @property
    def disk_full(self) -> Path:
        """Written by a trial that met a full disk; the driver stops the sweep on it (`full_disk`)."""
        return self.experiment / "disk_full.txt"

    @property
    def students(self) -> Path:
        return self.experiment / "students"

    def trial_result(self, trial_id: str) -> Path:
        return self.experiment / "results" / f"{trial_id}.json"
