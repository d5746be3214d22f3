"""The whole Ray wiring on a small local cluster with fast fake pipeline steps that write small files:
2 pairs x 2 trials, 1 worker per training phase, every phase in a real `TorchTrainer`, the
vocabulary and the evaluation in Ray tasks, the trials under one Tuner with one Optuna study per pair."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.results import read_rows
from bistil_ray.results_schema import TRIALS_SCHEMA
from bistil_ray.orchestration.sweep_config import SweepConfig
from sweep_fakes import fake_pipeline, small_teacher

def event_tags(path: Path) -> set[str]:
    """The summary tags of a TensorBoard event file: TFRecord framing (length, its CRC, the record,
    its CRC) around Event protos, read with tensorboardX's protobuf classes."""
    from tensorboardX.proto import event_pb2

    data, offset, tags = path.read_bytes(), 0, set()
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
        tags.update(value.tag for value in event.summary.value)
        offset += 12 + length + 4
    return tags


def dashboard_studies(journal: Path) -> dict[str, list[dict]]:
    """Study name -> its trials, as `optuna-dashboard` serves them over HTTP from `journal` (the
    dashboard started on 127.0.0.1 on a free port, and stopped)."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(Path(sys.executable).parent / "optuna-dashboard"), str(journal), "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def get(path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return json.load(answer)

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                summaries = get("/api/studies")["study_summaries"]
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        return {study["study_name"]: get(f"/api/studies/{study['study_id']}?after=0")["trials"] for study in summaries}
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.timeout(900)
def test_two_pairs_two_trials_each(tmp_path, cluster):
    from bistil_ray.orchestration.driver import run_sweep

    sweep = SweepConfig(
        name="wiring",
        teacher=small_teacher(tmp_path / "teacher"),
        target_langs=["de", "it"],
        student={"layers": 2},
        phase2={"full_steps": 2, "sparse_steps": 1},
        search_space={"density": {"uniform": [0.01, 0.5]}},
        trials_per_pair=2,
        resources={"workers_per_trial": 1, "concurrent_trials": 2, "report_poll_interval_s": 0.2},
        mlflow={"enabled": True},
    )
    paths = SweepPaths(tmp_path / "storage", sweep.name)
    rows = run_sweep(sweep, paths, resume=False, address=cluster.address, pipeline=fake_pipeline(), live=False)

    assert len(rows) == 4 and {row["status"] for row in rows} == {"ok"}
    assert "Connecting to existing Ray cluster" in paths.ray_log.read_text()  # Ray's messages, kept off the console
    assert sorted(row["target_lang"] for row in rows) == ["de", "de", "it", "it"]
    for target in ("de", "it"):
        mine = [row for row in rows if row["target_lang"] == target]
        assert sorted(row["phase1_cache_hit"] for row in mine) == [False, True]  # built once, reused once
        assert len({row["phase1_key"] for row in mine}) == 1
    assert sum(not row["task_teacher_cache_hit"] for row in rows) == 1  # one task teacher for both pairs
    # Built while the other trial waits for it: on both trials' CPUs, the 2 of the cluster.
    [teacher_config] = (paths.artifacts / "task_teacher").glob("*/config.json")
    assert json.loads(teacher_config.read_text())["worker_cpus"] == 2
    phase1_configs = (paths.artifacts / "phase1_student").glob("*/config.json")
    assert [json.loads(config.read_text())["worker_cpus"] for config in phase1_configs] == [1, 1]
    assert sum(path.is_dir() for path in (paths.artifacts / "phase1_student").iterdir()) == 2
    assert all((Path(row["student_path"]) / "config.json").exists() for row in rows)
    assert not list(paths.artifacts.glob("*/.checkpoints")) and not (paths.students / ".checkpoints").exists()

    import pyarrow.parquet as pq

    assert pq.read_schema(paths.trials_table).equals(TRIALS_SCHEMA)
    summary = read_rows(paths.summary_table)
    assert sorted(row["target_lang"] for row in summary if row["is_best"]) == ["de", "it"]

    state = pickle.loads(next(paths.experiment.glob("searcher-state-*.pkl")).read_bytes())
    studies = {target: search._ot_study for target, search in state["studies"].items()}
    assert set(studies) == {"de", "it"}
    # The same studies in Optuna's journal inside the sweep folder, as optuna-dashboard reads it.
    journal = JournalStorage(JournalFileBackend(str(paths.optuna_journal)))
    assert sorted(optuna.get_all_study_names(storage=journal)) == ["wiring-de", "wiring-it"]
    for target, study in studies.items():
        stored = optuna.load_study(study_name=f"wiring-{target}", storage=journal)
        assert [(t.params, t.values, t.state) for t in stored.trials] == [(t.params, t.values, t.state) for t in study.trials]
        assert [trial.state for trial in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
        densities = sorted(trial.params["density"] for trial in study.trials)
        assert densities == sorted(row["density"] for row in rows if row["target_lang"] == target)
    # TensorBoard's event files, one per trial inside the sweep folder (Ray's default logger), with
    # each evaluation's objective as a curve: `tensorboard --logdir <storage>/<sweep>` shows them.
    for trial_dir in paths.experiment.glob("trial-*"):
        assert "ray/tune/objective_score" in event_tags(next(trial_dir.glob("events.out.tfevents.*")))
    print("trial_seconds:", sorted(round(row["trial_seconds"], 1) for row in rows))

    # Extended: trials_per_pair raised and run again on the same storage. Each study goes on from
    # its trials (numbers kept), the finished trials are not run again, and the new proposals are
    # not the old seed's start-up draws over again.
    before = {target: optuna.load_study(study_name=f"wiring-{target}", storage=journal).trials for target in ("de", "it")}
    extended = SweepConfig(**{**sweep.model_dump(), "trials_per_pair": 3})
    rows = run_sweep(extended, paths, resume=True, address=cluster.address, pipeline=fake_pipeline(), live=False)
    assert len(rows) == 6 and {row["status"] for row in rows} == {"ok"}
    journal = JournalStorage(JournalFileBackend(str(paths.optuna_journal)))
    for target in ("de", "it"):
        trials = optuna.load_study(study_name=f"wiring-{target}", storage=journal).trials
        assert [trial.number for trial in trials] == [0, 1, 2]
        assert [(t.params, t.values) for t in trials[:2]] == [(t.params, t.values) for t in before[target]]
        assert trials[2].state == optuna.trial.TrialState.COMPLETE
        assert trials[2].params["density"] not in [t.params["density"] for t in before[target]]
        mine = sorted(row["density"] for row in rows if row["target_lang"] == target)
        assert mine == sorted(trial.params["density"] for trial in trials)
    assert json.loads(paths.config_snapshot.read_text())["trials_per_pair"] == 3
    # What optuna-dashboard shows of it: every pair's study with every trial, as the rows have them.
    served = dashboard_studies(paths.optuna_journal)
    assert set(served) == {"wiring-de", "wiring-it"}
    for target in ("de", "it"):
        trials = served[f"wiring-{target}"]
        assert [(trial["number"], trial["state"]) for trial in trials] == [(0, "Complete"), (1, "Complete"), (2, "Complete")]
        densities = sorted(next(p["param_internal_value"] for p in trial["params"] if p["name"] == "density") for trial in trials)
        assert densities == pytest.approx(sorted(row["density"] for row in rows if row["target_lang"] == target))

    # MLflow: one run per trial of both Tune runs, two trials at a time writing through the driver,
    # each run with its own trial's settings, final values, pair and student.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{paths.mlflow_database}")
    runs = client.search_runs([client.get_experiment_by_name("wiring").experiment_id])
    by_trial = {run.data.tags["bistil.trial_id"]: run for run in runs}
    assert len(runs) == 6 and set(by_trial) == {row["trial_id"] for row in rows}
    for row in rows:
        run = by_trial[row["trial_id"]]
        assert run.info.status == "FINISHED" and run.data.tags["pair"] == f"en-{row['target_lang']}"
        assert run.data.tags["student_path"] == row["student_path"]
        assert float(run.data.params["density"]) == pytest.approx(row["density"])
        assert run.data.metrics["objective_score"] == pytest.approx(row["objective_score"])
