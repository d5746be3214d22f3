"""A sweep stops at its first full disk.

A trial that finds too little free space to start a step (`output_paths.DiskSpaceError`) fails
without a result, so that `--resume` runs it again. Every other trial writes to the same storage and
would meet the same disk, one after another, each after the work it does before its first write. So
the trial leaves its one-line reason in `<sweep>/disk_full.txt` before it fails, and the driver's
`StopOnFullDisk` ends the Tune run once Tune has recorded that failure.

It ends the run the way Ctrl+C does: Tune's own interrupt (SIGUSR1, which `tune.run` handles in the
main thread) finishes the current step, saves the experiment's state one last time and stops the
running trials, which resume from their checkpoints. An exception raised out of a callback would skip
that save, and `--resume` would restore an older state that may not know the failed trial: Optuna
would draw another in its place, and the failed one's row would stay in the table for ever. The
driver then raises the recorded line (`raise_recorded_full_disk`), and the sweep exits with status 2.
"""

from __future__ import annotations

import signal
import threading
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


def raise_recorded_full_disk(marker: Path) -> None:
    """Driver side, after `Tuner.fit`: the full disk that stopped the run, if one did."""
    if marker.exists():
        reason = marker.read_text().strip()
        marker.unlink(missing_ok=True)
        raise DiskSpaceError(reason)


class StopOnFullDisk(tune.Callback):
    """Driver side: interrupts the Tune run when a trial fails (or is about to be retried) after
    recording a full disk. Called after `ResultsWriter`, so the failed trial's row is written first."""

    def __init__(self, marker: Path):
        self.marker = marker

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._stop_if_full()

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._stop_if_full()

    def _stop_if_full(self) -> None:
        if not self.marker.exists():
            return
        if threading.current_thread() is threading.main_thread() and callable(signal.getsignal(signal.SIGUSR1)):
            signal.raise_signal(signal.SIGUSR1)
        else:
            # Tune installs its interrupt only in the main thread: stop without the last save.
            raise_recorded_full_disk(self.marker)
