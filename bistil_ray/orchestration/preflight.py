"""What a sweep checks before Ray starts and before it writes anything.

Every trial reads the teacher, the labelled task data and the phase-1 text of its pair; a problem
with any of them would otherwise fail every trial, one after another, after Ray had started and
the sweep had begun writing its storage. `check_inputs` reads them once up front (the same loaders
the trials use, so the same one-line messages), checks that the storage folder can be written and,
for a cluster this process starts itself, that this machine can hold one trial. `--dry-run` runs
the same checks, less those that need the network or a cluster.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from bistil_ray.config import expand_user
from bistil_ray.errors import UserInputError
from bistil_ray.output_paths import check_output_folder
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.sweep_config import ResourcesConfig, SweepConfig


def check_inputs(
    sweep: SweepConfig, paths: SweepPaths, *, resume: bool, dry_run: bool, local_cluster: bool
) -> SweepStart:
    """Raise `UserInputError` for the first problem found; else say how the run would start. `dry_run`: no hub look-ups and no
    machine check (the plan may be for another machine); `local_cluster`: the sweep starts its own
    Ray on this machine rather than joining one."""
    check_output_folder(paths.storage, "--storage")
    check_output_folder(paths.experiment, f"sweep {sweep.name} under --storage")
    start = check_storage(sweep, paths, resume)
    check_teacher(sweep.teacher, trust_remote_code=sweep.trust_remote_code, reach_hub=not dry_run)
    check_task_and_corpora(sweep)
    if sweep.mlflow.enabled and importlib.util.find_spec("mlflow") is None:
        raise UserInputError('mlflow.enabled: MLflow is not installed; pip install -e ".[tracking]"')
    if local_cluster and not dry_run:
        check_fits_machine(sweep.resources, machine_resources())
    return start


@dataclass(frozen=True)
class SweepStart:
    """How a run of the driver starts: a new sweep, the interrupted one resumed (Tune's state
    restored), or a finished one extended by new trials (`earlier_trials_per_pair` kept)."""

    mode: Literal["new", "resume", "extend"]
    earlier_trials_per_pair: int = 0


def check_storage(sweep: SweepConfig, paths: SweepPaths, resume: bool) -> SweepStart:
    """A new sweep must not overwrite an old one; a resumed one must be the sweep that started, or
    that sweep finished with a raised `trials_per_pair`."""
    from ray import tune  # only reads the folder; Ray does not start

    started = tune.Tuner.can_restore(str(paths.experiment))
    if not resume and started:
        raise UserInputError(
            f"{paths.experiment}: sweep '{sweep.name}' already exists; pass --resume to continue it, "
            "or choose another --storage or name"
        )
    if not resume:
        return SweepStart("new")
    if not started or not paths.config_snapshot.exists():
        raise UserInputError(f"--resume: no sweep to resume in {paths.experiment}")
    # Read through the schema, so that a setting added since the sweep started counts at its default.
    try:
        before = json.loads(SweepConfig.model_validate_json(paths.config_snapshot.read_text()).model_dump_json())
    except ValidationError:
        raise UserInputError(
            f"--resume: {paths.config_snapshot} is not a configuration this version of bistil_ray can read"
        ) from None
    now = json.loads(sweep.with_absolute_paths().model_dump_json())
    changed = [key for key in now if key not in ("resources", "trials_per_pair") and now[key] != before.get(key)]
    if changed:
        raise UserInputError(
            f"--resume: {changed[0]} differs from the sweep that started in {paths.experiment} "
            "(only resources may change on resume, and trials_per_pair may be raised)"
        )
    earlier = before["trials_per_pair"]
    if sweep.trials_per_pair == earlier:
        return SweepStart("resume", earlier)
    if sweep.trials_per_pair < earlier:
        raise UserInputError(
            f"--resume: trials_per_pair {sweep.trials_per_pair} is below the {earlier} the sweep in "
            f"{paths.experiment} was started with; it can only be raised"
        )
    check_finished(sweep, paths, earlier)
    return SweepStart("extend", earlier)


def check_finished(sweep: SweepConfig, paths: SweepPaths, trials_per_pair: int) -> None:
    """A sweep is extended only once every trial it planned has ended: the new trials then start
    from a study with all of its pair's results."""
    from bistil_ray.orchestration.results import read_rows

    ended = Counter(row["target_lang"] for row in read_rows(paths.trials_table))
    short = [target for target in sweep.target_langs if ended[target] < trials_per_pair]
    if short:
        raise UserInputError(
            f"--resume: trials_per_pair raised to {sweep.trials_per_pair}, but pair {sweep.source_lang}-{short[0]} "
            f"has {ended[short[0]]} of its {trials_per_pair} trials ended; resume with trials_per_pair "
            f"{trials_per_pair} to finish the sweep first, then raise it"
        )


def looks_like_path(name: str) -> bool:
    """A hub id is `name` or `org/name`; anything else with a slash, or starting with `.`/`~`, is a path."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1


def check_teacher(name: str, *, trust_remote_code: bool, reach_hub: bool) -> None:
    """What `resolve_teacher` checks, without converting a built-in teacher (minutes, done by the
    sweep once it has started) and, unless `reach_hub`, without asking the hub."""
    from bistil_ray.assets import teachers

    if name.startswith(teachers.BUILTIN_PREFIX):
        if name not in teachers.BUILTIN_TEACHERS:
            known = ", ".join(sorted(teachers.BUILTIN_TEACHERS))
            raise UserInputError(f"teacher {name!r}: unknown built-in teacher (built-in: {known})")
        return
    path = expand_user(name, "teacher")
    if path.is_dir():
        teachers.check_model_directory(name, path)
    elif looks_like_path(name):
        raise UserInputError(f"teacher {name!r}: no such directory")
    elif reach_hub:
        teachers.check_hub_model(name, trust_remote_code=trust_remote_code)


def check_task_and_corpora(sweep: SweepConfig) -> None:
    """Load the labelled data of every pair and the phase-1 text of every language, as the trials
    will. Hub datasets are left to the trials: checking them would mean downloading them here."""
    from bistil_ray.data.corpora import load_corpus
    from bistil_ray.data.tasks import load_task

    if sweep.task.builtin is not None:
        check_builtin_languages(sweep)
    if sweep.task.hub is None:
        load_task(sweep.task, sweep.source_lang, sweep.target_langs)
    for lang in [sweep.source_lang, *sweep.target_langs]:
        spec = sweep.corpora.get(lang)
        if spec is None or spec.file is not None:
            load_corpus(sweep.task, sweep.corpora, lang)


def check_builtin_languages(sweep: SweepConfig) -> None:
    from bistil_ray.data.builtin import builtin_task

    available = builtin_task(sweep.task.builtin).available_languages()
    targets = [(f"target_langs.{index}", lang) for index, lang in enumerate(sweep.target_langs)]
    fields = [("source_lang", sweep.source_lang), *targets]
    for field, lang in fields:
        if lang not in available:
            raise UserInputError(
                f"{field}: the built-in {sweep.task.builtin} task has no language '{lang}' (available: {', '.join(available)})"
            )


def machine_resources() -> dict[str, float]:
    """The CPUs and GPUs a local Ray cluster started by this process would have."""
    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return {"CPU": float(cpus), "GPU": float(torch.cuda.device_count())}


def check_fits_machine(resources: ResourcesConfig, machine: dict[str, float]) -> None:
    """One trial's training phase must fit on this machine, or its workers would wait forever."""
    for name, need in resources.per_trial().items():
        if need > machine.get(name, 0.0):
            per_worker = "cpus_per_worker" if name == "CPU" else "gpus_per_worker"
            raise UserInputError(
                f"resources: a trial needs {need:g} {name} (workers_per_trial x {per_worker}) but this machine "
                f"has {machine.get(name, 0.0):g}; ask for less, or pass --address of a cluster that has them"
            )
