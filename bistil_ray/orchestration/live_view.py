"""What a person watching the sweep sees: a live table by pair and phase, then a summary table.

Trials post their phase and step to a `ProgressBoard`, a named actor the driver creates (an actor
created inside a trial would die with it); the `LiveView` Tune callback combines the board with
Tune's own view of the trials (status, final results) and redraws the table about once a second.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import ray
from ray.tune import Callback
from ray.tune.experiment import Trial
from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table


def board_name(sweep: str) -> str:
    return f"bistil-progress-{sweep}"


@ray.remote(num_cpus=0)
class ProgressBoard:
    """Trial id -> what the trial is doing (phase, step, total_steps)."""

    def __init__(self) -> None:
        self._trials: dict[str, dict[str, Any]] = {}

    def update(self, trial_id: str, fields: dict[str, Any]) -> None:
        self._trials.setdefault(trial_id, {}).update(fields)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return self._trials


@dataclass
class Progress:
    """A trial's handle on the board; updates are fire-and-forget."""

    board: str
    trial_id: str

    @cached_property
    def _handle(self) -> ray.actor.ActorHandle:
        return ray.get_actor(self.board)

    def update(self, **fields: Any) -> None:
        self._handle.update.remote(self.trial_id, fields)

    def phase(self, phase: str, total_steps: int | None = None) -> None:
        self.update(phase=phase, step=None, total_steps=total_steps)

    def __getstate__(self) -> dict[str, Any]:
        return {"board": self.board, "trial_id": self.trial_id}


def _format(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


class LiveView(Callback):
    """Redraws the sweep table as Tune steps; prints its last state when the sweep ends."""

    def __init__(
        self, board: str, source_lang: str, target_langs: list[str], trials_per_pair: int, refresh_s: float = 1.0
    ):
        self.board = board
        self.source_lang = source_lang
        self.target_langs = target_langs
        self.trials_per_pair = trials_per_pair
        self.refresh_s = refresh_s

    def setup(self, **info: Any) -> None:
        self._live = Live(console=Console(), auto_refresh=False)
        self._live.start()
        self._drawn_at = 0.0

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if time.monotonic() - self._drawn_at >= self.refresh_s:
            self._draw(trials)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self._draw(trials)
        self._live.stop()

    def _draw(self, trials: list[Trial]) -> None:
        board = ray.get(ray.get_actor(self.board).snapshot.remote(), timeout=10)
        table = progress_table(trials, board, self.source_lang, self.target_langs, self.trials_per_pair)
        self._live.update(table, refresh=True)
        self._drawn_at = time.monotonic()


def progress_table(
    trials: list[Trial],
    board: dict[str, dict[str, Any]],
    source_lang: str,
    target_langs: list[str],
    trials_per_pair: int,
) -> Table:
    """Per pair: trials ok/pruned/failed of the planned count, what runs now, and the best so far."""
    table = Table(
        title="BiStil sweep: trials ok/pruned/failed (planned), running, best so far by the objective",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for column in ("pair", "trials", "running", "objective", "target", "retention", "speedup", "layers"):
        table.add_column(column, justify="left" if column in ("pair", "running") else "right")
    for target in target_langs:
        mine = [trial for trial in trials if trial.config.get("target_lang") == target]
        finished = [trial for trial in mine if trial.status == Trial.TERMINATED]
        completed = [trial for trial in finished if trial.last_result.get("completed")]
        failed = sum(trial.status == Trial.ERROR for trial in mine)
        best = max(completed, key=lambda trial: trial.last_result["objective_score"], default=None)
        result = best.last_result if best else {}
        running = [
            _running_line(trial, board.get(trial.trial_id, {})) for trial in mine if trial.status == Trial.RUNNING
        ]
        table.add_row(
            f"{source_lang}-{target}",
            f"{len(completed)}/{len(finished) - len(completed)}/{failed} ({trials_per_pair})",
            "\n".join(running) or "-",
            _format(result.get("objective_score"), ".3f"),
            _format(result.get("target_score"), ".3f"),
            _format(result.get("retention"), ".1%"),
            _format(result.get("speedup"), ".2f"),
            _format(best.config.get("student_layers") if best else None, "d"),
        )
    return table


def _running_line(trial: Trial, progress: dict[str, Any]) -> str:
    phase = progress.get("phase", "starting")
    step, total = progress.get("step"), progress.get("total_steps")
    where = f" {step}/{total}" if step is not None and total else (f" {step}" if step is not None else "")
    return f"{trial.trial_id}: {phase}{where}"


def summary_table(rows: list[dict[str, Any]], summary: list[dict[str, Any]]) -> Table:
    """The final table: per pair, trial counts, phase-1 reuse, and the best student against its teacher."""
    table = Table(
        title="BiStil sweep: trials ok/pruned/failed, phase-1 reuse, best student per pair by the objective",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    columns = ("pair", "trials", "p1 reused", "layers", "objective", "target", "teacher", "retention", "speedup")
    for column in columns:
        table.add_column(column, justify="left" if column == "pair" else "right")
    for target in dict.fromkeys(row["target_lang"] for row in rows):
        mine = [row for row in rows if row["target_lang"] == target]
        statuses = Counter(row["status"] for row in mine)
        best = next((row for row in summary if row["target_lang"] == target and row["is_best"]), {})
        table.add_row(
            f"{mine[0]['source_lang']}-{target}",
            f"{statuses['ok']}/{statuses['pruned']}/{statuses['error']}",
            f"{sum(bool(row['phase1_cache_hit']) for row in mine)}/{len(mine)}",
            _format(best.get("student_layers"), "d"),
            _format(best.get("objective_score"), ".3f"),
            _format(best.get("target_score"), ".3f"),
            _format(best.get("teacher_target_score"), ".3f"),
            _format(best.get("retention"), ".1%"),
            _format(best.get("speedup"), ".2f"),
        )
    return table
