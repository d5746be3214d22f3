"""bench/sweep_reuse: a trial that reused an artifact is priced at what its builder paid."""

from __future__ import annotations

import pytest

from bench.sweep_reuse import reuse_figures, unshared_seconds, unshared_whole_trial_seconds
from bistil_ray.errors import UserInputError

BUILDS = {"task_teacher_build_seconds": 100.0, "vocab_build_seconds": 10.0, "phase1_build_seconds": 50.0}


def trial(trial_id: str, *, built: bool, status: str = "ok") -> dict:
    """A trial that built all three artifacts itself, or found them all built."""
    got = {"task_teacher_seconds": 100.0, "vocab_seconds": 10.0, "phase1_seconds": 50.0} if built else {
        "task_teacher_seconds": 0.1, "vocab_seconds": 0.1, "phase1_seconds": 0.1
    }
    trial_seconds = sum(got.values()) + 40.0 + 5.0  # phase 2 and evaluation
    return {"trial_id": trial_id, "status": status, **BUILDS, **got, "phase2_seconds": 40.0,
            "evaluation_seconds": 5.0, "trial_seconds": trial_seconds}


def test_builder_and_reuser_cost_the_same_unshared():
    builder, reuser = trial("a", built=True), trial("b", built=False)
    assert unshared_seconds(builder) == unshared_seconds(reuser) == 200.0
    assert unshared_whole_trial_seconds(builder) == pytest.approx(unshared_whole_trial_seconds(reuser)) == 205.0


def test_ratio_is_the_wall_time_over_the_unshared_sum():
    rows = [trial("a", built=True), trial("b", built=False), trial("c", built=False)]
    figures = reuse_figures(rows, wall_seconds=300.0, concurrency=1)
    assert figures["sweep_reuse_ratio"] == pytest.approx(300.0 / 600.0)
    assert figures["sweep_reuse_ratio_whole_trials"] == pytest.approx(300.0 / 615.0)


def test_the_floor_is_the_first_teacher_then_every_trials_own_work_at_the_concurrency():
    rows = [trial("a", built=True), trial("b", built=False), trial("c", built=False)]
    assert reuse_figures(rows, 300.0, concurrency=1)["sweep_reuse_floor"] == pytest.approx((100.0 + 3 * 45.0) / 600.0)
    assert reuse_figures(rows, 300.0, concurrency=3)["sweep_reuse_floor"] == pytest.approx((100.0 + 45.0) / 600.0)


def test_a_trial_that_did_not_finish_cannot_be_priced():
    with pytest.raises(UserInputError, match="status pruned"):
        reuse_figures([trial("a", built=True), trial("b", built=False, status="pruned")], wall_seconds=1.0, concurrency=1)
    with pytest.raises(UserInputError, match="no vocab_build_seconds"):
        reuse_figures([{**trial("a", built=True), "vocab_build_seconds": None}], wall_seconds=1.0, concurrency=1)
