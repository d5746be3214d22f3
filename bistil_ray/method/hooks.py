"""How a training loop talks to whatever runs it: nothing, a terminal, or Ray Train.

The loops in this package know nothing of Ray. At every evaluation they write their full state
(model, optimiser, schedule, data position, RNG) into a fresh directory and hand it, with the
metrics, to `TrainHooks.on_evaluation`. The runner decides what a checkpoint means: kept on local
disk (`LocalHooks`), or passed to `ray.train.report` (the orchestration layer). On start, a loop
resumes exactly from `TrainHooks.resume_from` if it is set.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol


class TrainHooks(Protocol):
    resume_from: Path | None
    wants_checkpoints: bool

    def on_evaluation(self, metrics: dict[str, Any], checkpoint: Path | None) -> None:
        """Called on every rank at every evaluation; `checkpoint` is set on rank 0 only."""


@dataclass
class LocalHooks:
    """Single-process runs: keep the latest checkpoint under `checkpoint_dir`, log metrics."""

    checkpoint_dir: Path | None = None
    log: Callable[[dict[str, Any]], None] | None = None

    @property
    def wants_checkpoints(self) -> bool:
        return self.checkpoint_dir is not None

    @property
    def resume_from(self) -> Path | None:
        if self.checkpoint_dir is not None and (self.checkpoint_dir / "state.json").exists():
            return self.checkpoint_dir
        return None

    def on_evaluation(self, metrics: dict[str, Any], checkpoint: Path | None) -> None:
        if self.log is not None:
            self.log(metrics)
        if checkpoint is None or self.checkpoint_dir is None:
            return
        previous = self.checkpoint_dir.with_name(self.checkpoint_dir.name + ".old")
        shutil.rmtree(previous, ignore_errors=True)
        if self.checkpoint_dir.exists():
            self.checkpoint_dir.rename(previous)
        shutil.copytree(checkpoint, self.checkpoint_dir.with_name(self.checkpoint_dir.name + ".new"))
        self.checkpoint_dir.with_name(self.checkpoint_dir.name + ".new").rename(self.checkpoint_dir)
        shutil.rmtree(previous, ignore_errors=True)
