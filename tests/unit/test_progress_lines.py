"""Progress where the output is not a terminal: one plain line per change of a trial's phase or step
and per ended trial, with the trials done and the time left; a run's lines reach a pipe at once."""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from ray.tune.experiment import Trial

from bistil_ray.orchestration.live_view import duration, plain_lines, still_running_line, time_left


def trial(trial_id: str, status: str, target: str = "de", result: dict | None = None) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, status=status, config={"target_lang": target}, last_result=result or {})


def test_a_line_per_change_of_phase_or_step_and_per_ended_trial_each_once():
    printed: dict[str, str] = {}
    running = [trial("a", Trial.RUNNING), trial("b", Trial.PENDING)]
    board = {"a": {"phase": "phase 2", "step": 200, "total_steps": 800}}
    assert plain_lines(running, board, printed) == ["de a: phase 2 200/800"]
    assert plain_lines(running, board, printed) == []  # nothing changed: nothing printed
    board["a"]["step"] = 400
    assert plain_lines(running, board, printed) == ["de a: phase 2 400/800"]
    ended = [
        trial("a", Trial.TERMINATED, result={"completed": True, "objective_score": 0.8125}),
        trial("b", Trial.TERMINATED, "fr", result={"objective_score": 0.3}),
        trial("c", Trial.ERROR),
    ]
    assert plain_lines(ended, board, printed) == ["de a: ended (objective 0.812)", "fr b: ended (pruned)", "de c: ended (failed)"]


def test_a_quiet_spell_gets_a_line_saying_what_still_runs():
    trials = [trial("a", Trial.RUNNING), trial("b", Trial.RUNNING, "zh"), trial("c", Trial.TERMINATED)]
    board = {"a": {"phase": "task teacher", "step": 100, "total_steps": 400}}
    line = still_running_line(trials, board, "1 of 4 trials done")
    assert line == "still running: de a: task teacher 100/400, zh b: starting; 1 of 4 trials done"


def test_the_time_left_follows_the_pace_of_the_trials_done():
    assert time_left(600.0, 0, 8) == "unknown until a trial ends"
    assert time_left(600.0, 2, 8) == "about 30m00s left"
    assert time_left(600.0, 8, 8) == "about 0m00s left"
    assert duration(3725) == "1h02m"


def test_a_runs_progress_reaches_a_pipe_line_by_line():
    """What `line_buffered_output` fixes: without it, a piped child's printed lines wait in its buffer."""
    code = (
        "import time; from bistil_ray.console import line_buffered_output; line_buffered_output(); "
        "print('step 1', flush=False); time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        started = time.monotonic()
        assert child.stdout.readline().strip() == "step 1" and time.monotonic() - started < 20
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("verbose", [False, True])
def test_ray_messages_go_to_the_sweep_log_and_reach_the_console_only_when_verbose(tmp_path, verbose):
    import logging
    import os

    import ray  # noqa: F401  (installs Ray's console handler on the `ray` logger)

    from bistil_ray.orchestration.driver import ray_messages_to

    ray_logger = logging.getLogger("ray")
    handlers = list(ray_logger.handlers)
    console_levels = [handler.level for handler in handlers]
    log_file = tmp_path / "sweep" / "ray.log"
    with ray_messages_to(log_file, verbose=verbose):
        during = [handler.level for handler in handlers]
        tune_output = os.environ.get("RAY_AIR_NEW_OUTPUT")
        logging.getLogger("ray.tune").info("To visualize your results with TensorBoard, run ...")
        logging.getLogger("ray._private.authentication").warning("Token authentication is enabled")
    assert during == (console_levels if verbose else [logging.ERROR] * len(console_levels))
    assert tune_output == (None if verbose else "0") and "RAY_AIR_NEW_OUTPUT" not in os.environ
    assert "TensorBoard" in log_file.read_text() and "Token authentication" in log_file.read_text()
    assert ray_logger.handlers == handlers and [handler.level for handler in handlers] == console_levels
