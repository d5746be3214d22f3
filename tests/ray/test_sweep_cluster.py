"""The sweep on more than one node, and after its driver is killed: tiny sweeps with the fast fake
pipeline steps of `sweep_fakes`, each training phase still run on Ray as a real one is.

- Two nodes (`ray.cluster_utils.Cluster` + `add_node()`), each with one `trial_driver` slot: two
  trials at once must run one on each node, and share the artifacts through the storage both see.
- Kill and resume: the driver runs in a subprocess that is SIGKILLed twice while trials are running,
  then resumed until the sweep is done.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest

from bistil_ray.atomic import TMP_PREFIX
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.sweep_config import SweepConfig
from sweep_fakes import fake_pipeline, small_teacher

TESTS = Path(__file__).parents[1]  # the helper modules, for the subprocess
POLL_S = 0.2


def tiny_sweep(name: str, teacher: str, target_langs: list[str], trials_per_pair: int) -> SweepConfig:
    return SweepConfig(
        name=name,
        teacher=teacher,
        target_langs=target_langs,
        student={"layers": 2},
        phase2={"full_steps": 2, "sparse_steps": 1},
        search_space={"density": {"uniform": [0.01, 0.5]}},
        trials_per_pair=trials_per_pair,
        resources={"workers_per_trial": 1, "concurrent_trials": 2, "report_poll_interval_s": POLL_S},
    )


@pytest.mark.timeout(600)
def test_two_trials_run_on_two_nodes_and_share_the_artifacts(tmp_path):
    from ray.cluster_utils import Cluster

    from bistil_ray.orchestration.driver import run_sweep

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"trial_driver": 1}})
    try:
        worker = cluster.add_node(num_cpus=1, resources={"trial_driver": 1})
        cluster.wait_for_nodes()
        nodes = {cluster.head_node.node_id, worker.node_id}
        sweep = tiny_sweep("two-nodes", small_teacher(tmp_path / "teacher"), ["de", "it"], trials_per_pair=1)
        # A local folder is shared storage here only because both "nodes" are this machine.
        paths = SweepPaths(tmp_path / "storage", sweep.name)
        rows = run_sweep(sweep, paths, resume=False, address=cluster.address, pipeline=fake_pipeline(), live=False)
    finally:
        cluster.shutdown()

    assert [row["status"] for row in rows] == ["ok", "ok"]
    assert {row["node"] for row in rows} == nodes  # one trial_driver slot per node: one trial on each
    # The task teacher is built by the trial on one node and reused by the trial on the other.
    assert sorted(row["task_teacher_cache_hit"] for row in rows) == [False, True]
    assert len({row["task_teacher_key"] for row in rows}) == 1
    print("trial_seconds:", sorted(round(row["trial_seconds"], 1) for row in rows))


# --- kill and resume ----------------------------------------------------------------------------------

DRIVER = "import sys, sweep_fakes; sweep_fakes.drive(*sys.argv[1:5], resume=sys.argv[5] == 'resume')"


def start_driver(sweep_file: Path, paths: SweepPaths, address: str, step_log: Path, resume: bool) -> subprocess.Popen:
    python_path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    arguments = [str(sweep_file), str(paths.storage), address, str(step_log), "resume" if resume else "new"]
    with open(paths.storage / "driver.log", "a") as output:  # the child keeps its own copy of the handle
        return subprocess.Popen(
            [sys.executable, "-c", DRIVER, *arguments],
            env={**os.environ, "PYTHONPATH": python_path},
            stdout=output,
            stderr=output,
        )


def trial_key(target_lang: str, density: float) -> str:
    """A trial as the fake steps log it: Optuna's sampled density tells the trials apart."""
    return f"{target_lang} {density!r}"


def logged_steps(step_log: Path) -> list[tuple[str, str]]:
    """(step, trial) for each step the fake pipeline started, in order."""
    lines = step_log.read_text().splitlines() if step_log.exists() else []
    return [(line.split(" ", 1)[0], line.split(" ", 1)[1]) for line in lines]


def watch(driver: subprocess.Popen, paths: SweepPaths, step_log: Path, kill: bool, timeout_s: float) -> dict:
    """Poll the running sweep until it ends or, with `kill`, until a trial has finished and another
    is at work in this run (a fake step logged, or a student being written), then SIGKILL the
    driver. Returns the last poll's table, where the step log stood, and the table reads that failed."""
    first_step = len(logged_steps(step_log))
    old_staging = set(paths.students.glob(f"{TMP_PREFIX}*"))
    failed_reads = []
    rows: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while driver.poll() is None:
        assert time.monotonic() < deadline, f"no kill point within {timeout_s} s"
        try:
            rows = pq.read_table(paths.trials_table).to_pylist() if paths.trials_table.exists() else []
        except Exception as error:  # any failure is the finding: the table must always be readable
            failed_reads.append(repr(error))
        finished = {trial_key(row["target_lang"], row["density"]) for row in rows}
        stepping = {trial for _, trial in logged_steps(step_log)[first_step:]} - finished
        writing = set(paths.students.glob(f"{TMP_PREFIX}*")) - old_staging
        if kill and finished and (stepping or writing):
            driver.kill()
            driver.wait()
            break
        time.sleep(POLL_S)
    return {"rows": rows, "last_step": len(logged_steps(step_log)), "failed_reads": failed_reads}


def driver_log(paths: SweepPaths) -> str:
    return (paths.storage / "driver.log").read_text()[-3000:]


@pytest.mark.timeout(900)
def test_a_sweep_killed_twice_resumes_to_every_trial_once(tmp_path, cluster):
    sweep = tiny_sweep("killed", small_teacher(tmp_path / "teacher"), ["de", "it"], trials_per_pair=2)
    paths = SweepPaths(tmp_path / "storage", sweep.name)
    paths.storage.mkdir()
    sweep_file = tmp_path / "sweep.json"
    sweep_file.write_text(sweep.model_dump_json())
    step_log = tmp_path / "steps.log"
    started = time.monotonic()

    runs = []
    for resume, kill in [(False, True), (True, True), (True, False)]:
        driver = start_driver(sweep_file, paths, cluster.address, step_log, resume)
        try:
            runs.append(watch(driver, paths, step_log, kill, timeout_s=240))
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
        runs[-1]["returncode"] = driver.returncode
        runs[-1]["seconds"] = time.monotonic() - started
    assert [run["returncode"] for run in runs] == [-9, -9, 0], driver_log(paths)
    assert [run["failed_reads"] for run in runs] == [[], [], []]

    rows = pq.read_table(paths.trials_table).to_pylist()
    assert len(rows) == sweep.total_trials and len({row["trial_id"] for row in rows}) == len(rows)
    assert {row["status"] for row in rows} == {"ok"}
    assert sorted(row["target_lang"] for row in rows) == ["de", "de", "it", "it"]

    # No trial ran but the table's, and no trial finished before a kill ran a step after it.
    steps = logged_steps(step_log)
    assert {trial for _, trial in steps} == {trial_key(row["target_lang"], row["density"]) for row in rows}
    for run in runs[:2]:
        finished = {trial_key(row["target_lang"], row["density"]) for row in run["rows"]}
        assert finished and not [step for step in steps[run["last_step"] :] if step[1] in finished]
    assert all(any(step == ("phase2", trial) for step in steps) for _, trial in steps)

    # Each pair's Optuna study came back with its trials: trials_per_pair of them complete.
    newest = max(paths.experiment.glob("searcher-state-*.pkl"))  # named by the driver's start time
    studies = {target: search._ot_study for target, search in pickle.loads(newest.read_bytes())["studies"].items()}
    assert set(studies) == {"de", "it"}
    for target, study in studies.items():
        # Every trial completed once; one a killed driver had asked for and never ran is FAIL in the journal.
        states = [trial.state for trial in study.trials]
        assert states.count(optuna.trial.TrialState.COMPLETE) == sweep.trials_per_pair
        assert set(states) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL}
        completed = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
        densities = sorted(trial.params["density"] for trial in completed)
        assert densities == sorted(row["density"] for row in rows if row["target_lang"] == target)
    print("rows at each kill:", [len(run["rows"]) for run in runs[:2]])
    print("seconds at each driver's end:", [round(run["seconds"]) for run in runs])
