"""What a sweep exports to the Ray dashboard's metrics and to Prometheus, via `ray.util.metrics`.

Each Ray node's metrics agent serves these (Ray adds the prefix `ray_`) with Ray's own metrics, to
the Prometheus that `ray metrics launch-prometheus` starts or to any that scrapes the nodes:

    bistil_trial_phase{sweep, pair, trial_id, phase}       1 for the phase a trial is in, 0 once it left it
    bistil_train_step{sweep, pair, trial_id, phase}        last evaluated step of a training phase
    bistil_train_tokens_per_second{...same tags}           training throughput, all workers together
    bistil_artifact_requests_total{sweep, kind, outcome}   artifacts a trial needed: outcome hit or built

The trial function moves its `TrialMetrics` from phase to phase; the copy each training run gets
carries the phase it was made in, so the workers' step and throughput land under the right phase.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from ray.util.metrics import Counter, Gauge

TRIAL_TAGS = ("sweep", "pair", "trial_id", "phase")


# Created on first use, in whichever process records them (the trial's actor or a Train worker).
@cache
def _phase_gauge() -> Gauge:
    return Gauge("bistil_trial_phase", "1 for the phase a trial is in, 0 for phases it left", TRIAL_TAGS)


@cache
def _step_gauge() -> Gauge:
    return Gauge("bistil_train_step", "last evaluated step of the trial's training phase", TRIAL_TAGS)


@cache
def _throughput_gauge() -> Gauge:
    return Gauge("bistil_train_tokens_per_second", "training tokens per second over all workers", TRIAL_TAGS)


@cache
def _artifact_counter() -> Counter:
    return Counter(
        "bistil_artifact_requests", "artifacts trials needed: reused (hit) or built", ("sweep", "kind", "outcome")
    )


@dataclass
class TrialMetrics:
    sweep: str
    pair: str
    trial_id: str
    phase: str = "starting"

    def tags(self) -> dict[str, str]:
        return {"sweep": self.sweep, "pair": self.pair, "trial_id": self.trial_id, "phase": self.phase}

    def enter(self, phase: str) -> None:
        _phase_gauge().set(0, self.tags())
        self.phase = phase
        _phase_gauge().set(1, self.tags())

    def training_progress(self, metrics: dict[str, Any]) -> None:
        """A training phase's evaluation metrics (rank 0's, which count every worker's tokens)."""
        if metrics.get("step") is not None:
            _step_gauge().set(metrics["step"], self.tags())
        if metrics.get("tokens_per_s") is not None:
            _throughput_gauge().set(metrics["tokens_per_s"], self.tags())

    def artifact_used(self, kind: str, cache_hit: bool) -> None:
        _artifact_counter().inc(1, {"sweep": self.sweep, "kind": kind, "outcome": "hit" if cache_hit else "built"})
