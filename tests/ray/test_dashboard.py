"""Monitoring: while a tiny sweep (fake steps, real Ray Tune and Ray Train) runs, the dashboard
address it prints answers over HTTP, and the node's Prometheus endpoint serves the sweep's phase,
step, throughput and artifact-reuse metrics."""

from __future__ import annotations

import json
import re
import socket
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.sweep_config import SweepConfig
from sweep_fakes import fake_pipeline, small_teacher

POLL_S = 0.5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pipeline_reporting_throughput():
    """The fake pipeline, with a phase 2 that reports tokens/s and outlives a metrics report."""
    pipeline = fake_pipeline()

    def run_phase2(inputs, phase1_dir, task_teacher_dir, vocab_dir, config, out_dir: Path, hooks) -> dict:
        for step in (1, 2):
            checkpoint = Path(tempfile.mkdtemp())
            (checkpoint / "state.json").write_text(json.dumps({"step": step}))
            hooks.on_evaluation({"step": step, "tokens_per_s": 1234.0, "source_score": 0.5}, checkpoint)
            time.sleep(1.0)
        (out_dir / "config.json").write_text("{}")
        return {}

    pipeline.run_phase2 = run_phase2
    return pipeline


class Watcher(threading.Thread):
    """Fetches the dashboard and the Prometheus endpoint until stopped; keeps what it saw."""

    def __init__(self, dashboard: str, metrics: str):
        super().__init__(daemon=True)
        self.dashboard, self.metrics = dashboard, metrics
        self.dashboard_answers: list[tuple[float, dict]] = []
        self.metric_lines: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(POLL_S):
            try:
                with urllib.request.urlopen(f"{self.dashboard}/api/version", timeout=5) as response:
                    self.dashboard_answers.append((time.monotonic(), json.loads(response.read())))
                with urllib.request.urlopen(self.metrics, timeout=5) as response:
                    text = response.read().decode()
            except OSError:
                continue
            self.metric_lines |= {line for line in text.splitlines() if line.startswith("ray_bistil_")}


@pytest.fixture
def cluster_with_dashboard():
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "resources": {"trial_driver": 2},
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
            "dashboard_port": free_port(),
            "_system_config": {"metrics_report_interval_ms": 500},
        },
    )
    yield cluster
    cluster.shutdown()


def metric_values(lines: set[str], name: str) -> dict[tuple[str, ...], float]:
    """{(phase or outcome, ...): value} of the series of `name` the watcher saw."""
    values = {}
    for line in lines:
        if line.startswith(name + "{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            key = tuple(labels[tag] for tag in ("phase", "outcome", "kind") if tag in labels)
            values[key] = max(values.get(key, float("-inf")), float(line.rsplit(" ", 1)[1]))
    return values


@pytest.mark.timeout(600)
def test_dashboard_answers_and_metrics_are_exported_during_a_sweep(tmp_path, cluster_with_dashboard, capsys):
    from bistil_ray.orchestration.driver import run_sweep

    head = cluster_with_dashboard.head_node
    sweep = SweepConfig(
        name="watched",
        teacher=small_teacher(tmp_path / "teacher"),
        target_langs=["de"],
        student={"layers": 2},
        phase2={"full_steps": 1, "sparse_steps": 1},
        search_space={"density": {"uniform": [0.01, 0.5]}},
        trials_per_pair=2,
        resources={"concurrent_trials": 2, "report_poll_interval_s": 0.2},
    )
    watcher = Watcher(f"http://{head.webui_url}", f"http://{head.node_ip_address}:{head.metrics_export_port}/metrics")
    watcher.start()
    started = time.monotonic()
    rows = run_sweep(
        sweep,
        SweepPaths(tmp_path / "storage", sweep.name),
        resume=False,
        address=cluster_with_dashboard.address,
        pipeline=pipeline_reporting_throughput(),
        live=False,
    )
    finished = time.monotonic()
    watcher.stop.set()
    watcher.join()

    assert [row["status"] for row in rows] == ["ok", "ok"]
    assert f"Ray dashboard: http://{head.webui_url}" in capsys.readouterr().out
    assert head.webui_url.startswith("127.0.0.1:")
    answered = [at for at, answer in watcher.dashboard_answers if started < at < finished and answer["ray_version"]]
    assert len(answered) >= 3

    phases = metric_values(watcher.metric_lines, "ray_bistil_trial_phase")
    assert {("task teacher",), ("phase 1",), ("phase 2",)} <= set(phases)
    steps = metric_values(watcher.metric_lines, "ray_bistil_train_step")
    assert steps[("phase 2",)] == 2.0
    assert metric_values(watcher.metric_lines, "ray_bistil_train_tokens_per_second")[("phase 2",)] == 1234.0
    requests = metric_values(watcher.metric_lines, "ray_bistil_artifact_requests_total")
    # Two trials of one pair: the first builds each artifact, the second reuses it.
    assert requests[("built", "phase1_student")] == 1 and requests[("hit", "phase1_student")] == 1
    print(f"sweep {finished - started:.1f}s, dashboard answered {len(answered)} times")
