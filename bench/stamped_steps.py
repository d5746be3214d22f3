"""Training steps that stamp when they start and end, in a module that imports nothing heavy: a Ray
Train worker that unpickles `empty_step` pays for Ray Train and torch only, not for this package."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STAMPS = "bench_stamps.json"


def stamped_step(step: Callable[[Path, Any], dict[str, Any]], out_dir: Path, hooks: Any) -> dict[str, Any]:
    """`step`, recording wall-clock times (comparable across processes of one machine) as it starts and ends."""
    entered = time.time()
    metrics = step(out_dir, hooks)
    (Path(out_dir) / STAMPS).write_text(json.dumps({"entered": entered, "exited": time.time()}))
    return metrics


def empty_step(out_dir: Path, hooks: Any) -> dict[str, Any]:
    return {}
