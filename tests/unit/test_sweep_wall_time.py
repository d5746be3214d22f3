"""driver_sessions.json: a sweep's wall time is the sum of its driver runs, and unknown if one was killed."""

from __future__ import annotations

import json

import pytest

from bistil_ray.errors import UserInputError
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.wall_time import driver_session, read_sessions, sweep_wall_seconds


def test_a_resumed_sweep_counts_each_run_but_not_the_gap_between_them(tmp_path):
    paths = SweepPaths(tmp_path, "s")
    paths.experiment.mkdir(parents=True)
    paths.driver_sessions.write_text(json.dumps([{"started": 100.0, "ended": 130.0}]))
    with driver_session(paths, started=1000.0):
        assert read_sessions(paths.driver_sessions)[-1] == {"started": 1000.0, "ended": None}
    ended = read_sessions(paths.driver_sessions)[-1]["ended"]
    assert sweep_wall_seconds(paths.driver_sessions) == pytest.approx(30.0 + ended - 1000.0)


def test_a_run_that_failed_still_records_its_end(tmp_path):
    paths = SweepPaths(tmp_path, "s")
    paths.experiment.mkdir(parents=True)
    with pytest.raises(RuntimeError), driver_session(paths, started=1.0):
        raise RuntimeError("trial failed")
    assert read_sessions(paths.driver_sessions)[0]["ended"] is not None


def test_a_killed_run_or_no_record_makes_the_wall_time_unknown(tmp_path):
    path = tmp_path / "driver_sessions.json"
    with pytest.raises(UserInputError, match="no driver run"):
        sweep_wall_seconds(path)
    path.write_text(json.dumps([{"started": 1.0, "ended": 5.0}, {"started": 9.0, "ended": None}]))
    with pytest.raises(UserInputError, match="1 of 2 driver runs"):
        sweep_wall_seconds(path)
