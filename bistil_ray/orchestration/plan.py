"""`--dry-run`: what a sweep would do, from its configuration alone (no Ray, no downloads, no writes)."""

from __future__ import annotations

import math

from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.preflight import SweepStart
from bistil_ray.orchestration.search_space import DIMENSIONS
from bistil_ray.orchestration.sweep_config import SweepConfig
from bistil_ray.steps import PHASE1_STUDENT, TASK_TEACHER, VOCABULARY, Step, sections_behind


def dimensions_behind(step: Step) -> tuple[str, ...]:
    """The searched dimensions that can change `step`'s key (besides the pair)."""
    sections = sections_behind(step)
    return tuple(name for name, (section, _) in DIMENSIONS.items() if section in sections)


def artifacts_per_pair(sweep: SweepConfig, step: Step) -> tuple[int, bool]:
    """(how many distinct artifacts of `step` a pair can need, whether exactly that many): each
    continuous dimension may give every trial its own."""
    counts = [sweep.dimensions()[name].values() for name in dimensions_behind(step)]
    if any(values is None for values in counts):
        return sweep.trials_per_pair, False
    combinations = math.prod(len(values) for values in counts)
    return min(combinations, sweep.trials_per_pair), combinations == 1


def storage_state(paths: SweepPaths, start: SweepStart) -> str:
    if start.mode == "extend":
        return f"exists, {start.earlier_trials_per_pair} trials per pair ended: --resume extends it"
    if start.mode == "resume":
        return "exists: --resume continues it"
    return "exists: use --resume to continue it" if paths.experiment.exists() else "new"


def describe_plan(sweep: SweepConfig, paths: SweepPaths, start: SweepStart = SweepStart("new")) -> str:
    pairs = len(sweep.target_langs)
    resources = sweep.resources
    per_worker = f"{resources.cpus_per_worker:g} CPU"
    if resources.use_gpu:
        per_worker += f" + {resources.gpus_per_worker:g} GPU"

    def artifact_line(label: str, step: Step, note: str, per_pair: bool = True) -> str:
        count, exact = artifacts_per_pair(sweep, step)
        count *= pairs if per_pair else 1
        amount = f"{count}" if exact else f"up to {count}"
        return f"  {label:<17} {amount:>10}  ({note})"

    dimensions = sweep.dimensions()
    recipes = dimensions["teacher_method"].values()
    teacher_steps = ", ".join(f"{recipe} {sweep.task_teacher.resolved(recipe).steps} steps" for recipe in recipes)
    lines = [
        f"sweep '{sweep.name}': teacher {sweep.teacher}, task {sweep.task.name}"
        + {"sequence": "", "token": " (token classification)", "parse": " (dependency parsing)", "qa": " (question answering)"}[sweep.task.kind]
        + f", source language {sweep.source_lang}",
        f"storage: {paths.experiment} ({storage_state(paths, start)}); artifacts shared under {paths.artifacts}",
        f"pairs ({pairs}): {', '.join(sweep.pairs)}",
        f"trials: {sweep.trials_per_pair} per pair, {sweep.total_trials} in all; one seeded Optuna TPE study per pair",
        f"objective: maximise {sweep.objective.score}"
        + (f", minimise {sweep.objective.tradeoff} (multi-objective)" if sweep.objective.multi_objective else "")
        + f"; Pareto front against {sweep.objective.tradeoff}",
        "scheduler: "
        + (
            f"ASHA per pair on phase-2 steps (grace {sweep.asha.grace_period_steps}, "
            f"reduction factor {sweep.asha.reduction_factor:g})"
            if sweep.scheduler == "asha"
            else "none (every trial runs to the end)"
        ),
        "search space:",
        *(
            f"  {name:<17} {dimension.describe()}{'' if dimension.is_searched else '  (fixed)'}"
            for name, dimension in dimensions.items()
        ),
        "artifacts (each built once; reused when already under the storage):",
        artifact_line(
            "task teachers", TASK_TEACHER, f"one per recipe; {teacher_steps} on {sweep.task.name} {sweep.source_lang}",
            per_pair=False,
        ),
        artifact_line("vocabularies", VOCABULARY, "per pair and threshold"),
        artifact_line(
            "phase-1 students", PHASE1_STUDENT, f"per pair, vocabulary, depth, phase-1 lr; {sweep.phase1.steps} steps"
        ),
        f"  {'phase-2 students':<17} {sweep.total_trials:>10}  (one per trial; "
        f"{sweep.phase2.full_steps} dense + {sweep.phase2.sparse_steps} sparse steps)",
        "export: "
        + (f"each pair's best student as ONNX{' (float32 and int8)' if sweep.export.int8 else ''}" if sweep.export.onnx else "none"),
        f"resources: {resources.workers_per_trial} worker(s) x {per_worker} per training phase, "
        f"up to {resources.concurrent_trials} trials at once; trial retries {resources.trial_retries}, "
        f"worker-group restarts {resources.worker_restarts}, "
        f"worker start timeout {resources.worker_start_timeout_s:g}s",
    ]
    return "\n".join(lines)
