"""bench/trial_overhead: a reusing trial's time beyond phase 2 is split into parts that add up."""

from __future__ import annotations

import pytest

from bench.trial_overhead import LOOKUPS, trial_parts


def test_the_parts_beyond_phase2_add_up_to_the_trial_less_its_training():
    row = {
        **dict.fromkeys(LOOKUPS, 0.5),
        "trial_seconds": 40.0,
        "phase2_seconds": 22.0,
        "phase2_train_seconds": 20.0,
        "evaluation_seconds": 12.0,
    }
    parts = trial_parts(row)
    assert parts["beyond_phase2_s"] == 20.0
    assert parts["phase2_start_and_finish_s"] == 2.0
    assert parts["artifact_lookups_s"] == pytest.approx(0.5 * len(LOOKUPS))
    pieces = ("artifact_lookups_s", "phase2_start_and_finish_s", "evaluation_s", "rest_s")
    assert sum(parts[name] for name in pieces) == pytest.approx(parts["beyond_phase2_s"])
    assert parts["rest_s"] == pytest.approx(20.0 - 2.0 - 12.0 - 0.5 * len(LOOKUPS))
