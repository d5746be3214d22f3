"""The tracking bench replays what the demo sweep's trials report."""

from __future__ import annotations

from bench.tracking_overhead import DEMO, demo_reports
from bistil_ray.orchestration.sweep_config import load_sweep
from bistil_ray.orchestration.trial import OBJECTIVE, SCHEDULER_TIME
from bistil_ray.results_schema import TRIALS_SCHEMA


def test_each_replayed_trial_reports_every_evaluation_then_a_full_final_row():
    phase2 = load_sweep(DEMO).phase2
    reports = demo_reports()
    evaluations = (phase2.full_steps + phase2.sparse_steps) // phase2.eval_every
    assert len(reports) == evaluations + 1
    assert [report[SCHEDULER_TIME] for report in reports[:-1]] == [phase2.eval_every * (i + 1) for i in range(evaluations)]
    assert all(OBJECTIVE in report for report in reports)
    assert set(TRIALS_SCHEMA.names) <= set(reports[-1])
    assert [report["training_iteration"] for report in reports] == list(range(1, len(reports) + 1))
