"""A sweep stops at its first full disk.

A trial that finds too little free space to start a step (`output_paths.DiskSpaceError`) fails
without a result, so that `--resume` runs it again. Every other trial writes to the same storage and
would meet the same disk, one after another, each after the work it does before its first write. So
the trial leaves its one-line reason in `<sweep>/disk_full.txt`, and the driver's `StopOnFullDisk`
ends the Tune run with that line: the sweep stops as a killed driver would (finished trials are in the
tables, running ones resume from their checkpoints) and exits with status 2.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ray import tune

from bistil_ray.atomic import atomic_write_text
from bistil_ray.output_paths import DiskSpaceError


def record_full_disk(marker: Path, error: DiskSpaceError) -> None:
    """Tell the driver. A disk too full even for this line leaves the trial's own error row to say it."""
    try:
        atomic_write_text(marker, str(error))
    except OSError:
        pass


class StopOnFullDisk(tune.Callback):
    """Driver side: raises the first recorded `DiskSpaceError` out of `Tuner.fit`, looking at most
    once every `every_s` seconds (Tune steps ten times a second; the marker may be on a network
    filesystem)."""

    def __init__(self, marker: Path, every_s: float = 1.0):
        self.marker, self.every_s = marker, every_s
        self._looked_at = 0.0

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        now = time.monotonic()
        if now - self._looked_at < self.every_s:
            return
        self._looked_at = now
        if self.marker.exists():
            reason = self.marker.read_text().strip()
            self.marker.unlink(missing_ok=True)
            raise DiskSpaceError(reason)
