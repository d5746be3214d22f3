"""The training loop's log: a line at each evaluation and, between them, at least every
PROGRESS_EVERY_S seconds, for logs that are not terminals."""

from __future__ import annotations

import re

import torch
from torch import nn

from bistil_ray.config import OptimConfig
from bistil_ray.method import training
from bistil_ray.method.hooks import LocalHooks
from bistil_ray.method.training import Evaluation, StepResult, ThroughputMeter, TrainingLoop


def run_loop(total_steps: int, eval_every: int) -> list[str]:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    lines: list[str] = []
    loop = TrainingLoop(
        name="tiny", phase="test", model=model, network=model, config=OptimConfig(eval_every=eval_every),
        total_steps=total_steps, hooks=LocalHooks(), meter=ThroughputMeter(torch.device("cpu"), torch.float32),
        best_metric="best", log=lines.append,
    )
    inputs = torch.randn(8, 4)

    def train_step(step: int) -> StepResult:
        return StepResult(loss=model(inputs).pow(2).mean(), parts={}, tokens=8, flops=1.0)

    loop.run(train_step, lambda step: Evaluation(score=-step, metrics={}, summary="score ok"))
    return lines


def test_a_progress_line_between_evaluations_once_the_interval_has_passed(monkeypatch):
    monkeypatch.setattr(training, "PROGRESS_EVERY_S", 0.0)
    lines = run_loop(total_steps=4, eval_every=2)
    assert [re.match(r"tiny step (\d)/4: loss", line).group(1) for line in lines] == ["1", "2", "3", "4"]
    assert all(re.search(r"\d+ s elapsed, about \d+ s left\)$", line) for line in lines)
    assert ["score ok" in line for line in lines] == [False, True, False, True]


def test_no_progress_line_before_the_interval():
    lines = run_loop(total_steps=4, eval_every=2)
    assert len(lines) == 2 and all("score ok" in line for line in lines)
