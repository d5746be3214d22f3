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


# A log that is not a terminal gets a line at least this often, even while no trial moves on (a
# long phase between two evaluations).
PLAIN_EVERY_S = 60.0


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


def duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def time_left(elapsed_s: float, done: int, planned: int) -> str:
    """The time left at the pace of the trials done so far (concurrency included in that pace)."""
    if done == 0:
        return "unknown until a trial ends"
    return f"about {duration(elapsed_s / done * max(planned - done, 0))} left"


class LiveView(Callback):
    """Redraws the sweep table as Tune steps, with the trials done of those planned and the time
    left; prints its last state when the sweep ends. When the output is not a terminal (a cluster
    job's log, nohup, CI) it prints one plain line per change of a trial's phase or step and per
    finished trial instead, so that a log shows progress as it happens."""

    def __init__(
        self, board: str, source_lang: str, target_langs: list[str], trials_per_pair: int, refresh_s: float = 1.0
    ):
        self.board = board
        self.source_lang = source_lang
        self.target_langs = target_langs
        self.trials_per_pair = trials_per_pair
        self.refresh_s = refresh_s

    def setup(self, **info: Any) -> None:
        console = Console()
        self._plain = not console.is_terminal
        self._live = None if self._plain else Live(console=console, auto_refresh=False)
        if self._live is not None:
            self._live.start()
        self._drawn_at = 0.0
        self._started = time.monotonic()
        self._printed: dict[str, str] = {}  # trial id -> its last plain line
        self._printed_at = self._started

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if time.monotonic() - self._drawn_at >= self.refresh_s:
            self._draw(trials)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self._draw(trials)
        if self._live is not None:
            self._live.stop()

    def _draw(self, trials: list[Trial]) -> None:
        board = ray.get(ray.get_actor(self.board).snapshot.remote(), timeout=10)
        self._drawn_at = time.monotonic()
        planned = self.trials_per_pair * len(self.target_langs)
        done = sum(trial.status in (Trial.TERMINATED, Trial.ERROR) for trial in trials)
        elapsed = self._drawn_at - self._started
        overall = f"{done} of {planned} trials done, {duration(elapsed)} elapsed, {time_left(elapsed, done, planned)}"
        if self._live is None:
            lines = plain_lines(trials, board, self._printed)
            if not lines and self._drawn_at - self._printed_at >= PLAIN_EVERY_S:
                lines = [still_running_line(trials, board, overall)]
            for line in lines:
                print(f"[{duration(elapsed)}] {line}" + (f"; {overall}" if " ended " in line else ""), flush=True)
                self._printed_at = self._drawn_at
            return
        table = progress_table(trials, board, self.source_lang, self.target_langs, self.trials_per_pair)
        table.caption, table.caption_justify = overall, "left"
        self._live.update(table, refresh=True)


def plain_lines(trials: list[Trial], board: dict[str, dict[str, Any]], printed: dict[str, str]) -> list[str]:
    """A line for each trial whose phase or step changed since `printed` (updated in place), and one
    when it ends."""
    lines = []
    for trial in trials:
        pair = trial.config.get("target_lang", "?")
        if trial.status == Trial.RUNNING:
            line = f"{pair} {_running_line(trial, board.get(trial.trial_id, {}))}"
        elif trial.status in (Trial.TERMINATED, Trial.ERROR):
            result = trial.last_result or {}
            outcome = "failed" if trial.status == Trial.ERROR or result.get("error") else (
                f"objective {_format(result.get('objective_score'), '.3f')}" if result.get("completed") else "pruned"
            )
            line = f"{pair} {trial.trial_id}: ended ({outcome})"
        else:
            continue
        if printed.get(trial.trial_id) != line:
            printed[trial.trial_id] = line
            lines.append(line)
    return lines


def still_running_line(trials: list[Trial], board: dict[str, dict[str, Any]], overall: str) -> str:
    """What every running trial is doing, for a log that has had no line for a while."""
    running = [
        f"{trial.config.get('target_lang', '?')} {_running_line(trial, board.get(trial.trial_id, {}))}"
        for trial in trials
        if trial.status == Trial.RUNNING
    ]
    return f"still running: {', '.join(running) or 'nothing'}; {overall}"


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
