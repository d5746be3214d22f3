"""Ray Tune around the trial function: one seeded Optuna study per pair, optional per-pair ASHA.

A language pair as an Optuna parameter would make Optuna optimise *which* pair to run; and
`grid_search` cannot be combined with `OptunaSearch`. So one `PairwiseSearch` keeps one seeded
TPE `OptunaSearch` per pair, hands out each pair's trials in turn so that all pairs progress
together, and tells each study only about its own trials. `PairwiseAsha` likewise keeps one ASHA per
pair, so a trial is only ever stopped in favour of trials of the same pair.
"""

from __future__ import annotations

import math
import pickle
import zlib
from pathlib import Path
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage
from optuna.trial import TrialState
from optuna.storages.journal import JournalFileBackend
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.search_space import optuna_space
from bistil_ray.orchestration.sweep_config import SweepConfig
from bistil_ray.orchestration.train_runner import TRIAL_DRIVER
from bistil_ray.orchestration.trial import OBJECTIVE, SCHEDULER_TIME, TrialContext, run_trial


def objective_metrics(sweep: SweepConfig) -> tuple[str | list[str], str | list[str]]:
    """Tune metric(s) and mode(s): the score, and with multi_objective also the trade-off."""
    if sweep.objective.multi_objective:
        return [OBJECTIVE, sweep.objective.tradeoff], ["max", "min"]
    return OBJECTIVE, "max"


def pair_seed(seed: int, target_lang: str, earlier_trials: int = 0) -> int:
    """A pair's sampler seed: stable however the target list is ordered or extended. A study that
    continues after `earlier_trials` gets a seed of its own: the first seed's sampler would draw its
    random start-up proposals again."""
    key = f"{seed}:{target_lang}" + (f":{earlier_trials}" if earlier_trials else "")
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


def journal_storage(path: Path) -> JournalStorage:
    """Optuna's journal storage in one file: no database server, safe on a shared filesystem (it
    appends under a file lock), and what `optuna-dashboard <path>` opens."""
    return JournalStorage(JournalFileBackend(str(path)))


class PairwiseSearch(Searcher):
    """`trials_per_pair` trials for each target language, each pair with its own Optuna study, kept
    in memory or, given `journal`, in that Optuna journal file (study `<sweep name>-<target>`).
    Extending a finished sweep, each pair already has `earlier_trials` trials: its study, loaded from
    the journal, holds them, so TPE's proposals start from their results."""

    def __init__(self, sweep: SweepConfig, journal: Path | None = None, earlier_trials: int = 0):
        metric, mode = objective_metrics(sweep)
        super().__init__(metric=metric, mode=mode)
        space = optuna_space(sweep.dimensions())
        self.trials_per_pair = sweep.trials_per_pair
        self.earlier_trials = earlier_trials
        storage = journal_storage(journal) if journal is not None else None
        self.studies = {
            target: OptunaSearch(
                space, metric=metric, mode=mode, seed=pair_seed(sweep.seed, target, earlier_trials),
                study_name=f"{sweep.name}-{target}",
                storage=storage,
            )
            for target in sweep.target_langs
        }
        self.pair_of_trial: dict[str, str] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        started = {target: self.earlier_trials for target in self.studies}
        for target in self.pair_of_trial.values():
            started[target] += 1
        target = min(started, key=started.get)
        if started[target] >= self.trials_per_pair:
            return Searcher.FINISHED
        self.pair_of_trial[trial_id] = target
        return {"target_lang": target, **self.studies[target].suggest(trial_id)}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """An intermediate score goes to the pair's study as an intermediate value, for its curves
        (no Optuna pruner runs: stopping is the scheduler's). Optuna keeps none for several
        objectives, so a multi-objective study gets none."""
        score = result.get(self.metric) if isinstance(self.metric, str) else None
        # A failed trial's report holds no score (None): nothing to keep.
        if not (isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score)):
            return
        try:
            self.studies[self.pair_of_trial[trial_id]].on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            pass  # the journal saw this trial end before a killed driver was resumed: its first end stands

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        # A trial stopped early has no final result; telling Optuna nothing makes it a pruned trial.
        # One that failed deterministically reports its error as its result: a failed trial to Optuna.
        final = result if result and result.get("completed") else None
        failed = error or bool(result and result.get("error"))
        # A trial the journal already saw end (a driver killed before Tune checkpointed this searcher
        # runs it again) keeps its first end: OptunaSearch logs Optuna's refusal and goes on.
        self.studies[self.pair_of_trial[trial_id]].on_trial_complete(trial_id, final, error=failed)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__dict__, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.__dict__.update(pickle.load(handle))
        for study in self.studies.values():
            abandon_orphans(study)


def abandon_orphans(study: OptunaSearch) -> None:
    """Mark FAIL each trial the journal holds as running but this restored searcher does not know: a
    killed driver asked for it after its last checkpoint, and Tune runs that trial again under a new
    Optuna trial. (OptunaSearch keeps its study and trials in private attributes.)"""
    known = {trial._trial_id for trial in study._ot_trials.values()}
    storage = study._ot_study._storage
    for trial in study._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial._trial_id not in known:
            storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)


class PairwiseAsha(FIFOScheduler):
    """ASHA on phase-2 steps, run separately for each pair."""

    def __init__(self, sweep: SweepConfig):
        super().__init__()
        self._metric = OBJECTIVE
        self.by_pair = {
            target: AsyncHyperBandScheduler(
                time_attr=SCHEDULER_TIME,
                metric=OBJECTIVE,
                mode="max",
                max_t=sweep.phase2.full_steps + sweep.phase2.sparse_steps,
                grace_period=sweep.asha.grace_period_steps,
                reduction_factor=sweep.asha.reduction_factor,
                stop_last_trials=False,  # a trial at its last step still has its evaluation to report
            )
            for target in sweep.target_langs
        }

    def _of(self, trial: Trial) -> AsyncHyperBandScheduler:
        return self.by_pair[trial.config["target_lang"]]

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(f"{target}: {asha.debug_string()}" for target, asha in self.by_pair.items())


def trial_dirname(trial: Trial) -> str:
    return f"trial-{trial.config['target_lang']}-{trial.trial_id}"


def trainable(context: TrialContext) -> Any:
    """The trial function with its context, holding a `trial_driver` slot instead of a CPU."""
    return tune.with_resources(tune.with_parameters(run_trial, context=context), {TRIAL_DRIVER: 1})


def build_tuner(
    sweep: SweepConfig,
    paths: SweepPaths,
    context: TrialContext,
    concurrency: int,
    callbacks: list[tune.Callback],
    earlier_trials_per_pair: int = 0,
) -> tune.Tuner:
    """The Tuner of a new sweep or, after `earlier_trials_per_pair`, of its extension: a new Tune
    experiment in the same folder (`restore_tuner` then finds the newest), whose trials join the
    same tables and Optuna studies."""
    return tune.Tuner(
        trainable(context),
        tune_config=tune.TuneConfig(
            search_alg=PairwiseSearch(sweep, paths.optuna_journal, earlier_trials_per_pair),
            scheduler=PairwiseAsha(sweep) if sweep.scheduler == "asha" else None,
            num_samples=(sweep.trials_per_pair - earlier_trials_per_pair) * len(sweep.target_langs),
            max_concurrent_trials=concurrency,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=paths.sweep,
            storage_path=str(paths.storage),
            failure_config=tune.FailureConfig(max_failures=sweep.resources.trial_retries),
            callbacks=callbacks,
            verbose=0,
        ),
    )


def restore_tuner(paths: SweepPaths, context: TrialContext) -> tune.Tuner:
    """The interrupted sweep: finished trials kept, unfinished and failed ones run again (same
    trial ids, so their Train runs resume from checkpoints), the Optuna studies restored."""
    return tune.Tuner.restore(
        str(paths.experiment), trainable=trainable(context), resume_unfinished=True, resume_errored=True
    )
