"""How long a sweep ran: each run of its driver (the first, then each --resume), and their sum.

`driver_sessions.json`, beside the result tables, lists when every run of the driver began and
ended (Unix seconds). A sweep's wall time is the sum of its runs: the time between a killed driver
and its --resume, when nothing ran, does not count. A run killed too abruptly to record its end
(SIGKILL, power loss) leaves `ended` empty, and the wall time is then unknown rather than a guess.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from bistil_ray.atomic import atomic_write_text
from bistil_ray.errors import UserInputError
from bistil_ray.orchestration.paths import SweepPaths


@contextmanager
def driver_session(paths: SweepPaths, started: float) -> Iterator[None]:
    """Record this run of the driver, begun at `started` (`time.time()`), as ending when the block does."""
    sessions = read_sessions(paths.driver_sessions)
    sessions.append({"started": started, "ended": None})
    atomic_write_text(paths.driver_sessions, json.dumps(sessions, indent=1))
    try:
        yield
    finally:
        sessions[-1]["ended"] = time.time()
        atomic_write_text(paths.driver_sessions, json.dumps(sessions, indent=1))


def read_sessions(path: Path) -> list[dict[str, float | None]]:
    return json.loads(Path(path).read_text()) if Path(path).exists() else []


def sweep_wall_seconds(path: Path) -> float:
    """The sum of the driver runs recorded in `path` (a `driver_sessions.json`)."""
    sessions = read_sessions(path)
    if not sessions:
        raise UserInputError(f"{path}: no driver run recorded (a sweep from before this file was written?)")
    unfinished = [session for session in sessions if session["ended"] is None]
    if unfinished:
        raise UserInputError(
            f"{path}: {len(unfinished)} of {len(sessions)} driver runs recorded no end (killed); the wall time is unknown"
        )
    return sum(session["ended"] - session["started"] for session in sessions)
