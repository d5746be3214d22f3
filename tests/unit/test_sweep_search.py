"""The sweep's search without a cluster: the per-pair searcher and scheduler, how many trials run at
once, and the CPUs the task teacher takes."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest

from bistil_ray.orchestration.sweep_config import SweepConfig
from bistil_ray.orchestration.tuning import PairwiseAsha, PairwiseSearch

TRIAL_STATE = optuna.trial.TrialState


def search_sweep(target_langs: list[str], **settings) -> SweepConfig:
    space = {"density": {"uniform": [0.01, 0.5]}, "temperature": {"choice": [1.0, 2.0]}}
    return SweepConfig(name="s", target_langs=target_langs, search_space=space, trials_per_pair=2, **settings)


def test_pairwise_search_gives_each_pair_its_trials_in_turn_then_finishes():
    search = PairwiseSearch(search_sweep(["de", "fr", "it"]))
    suggestions = [search.suggest(f"t{index}") for index in range(7)]
    assert [suggestion["target_lang"] for suggestion in suggestions[:6]] == ["de", "fr", "it"] * 2
    assert suggestions[6] == PairwiseSearch.FINISHED
    assert all(0.01 <= suggestion["density"] <= 0.5 for suggestion in suggestions[:6])
    assert suggestions[0]["student_layers"] == 6  # fixed dimensions are part of every suggestion


def test_each_pair_is_seeded_on_its_own_and_only_hears_of_its_own_trials(tmp_path):
    first = PairwiseSearch(search_sweep(["de", "fr"]))
    reordered = PairwiseSearch(search_sweep(["fr", "de"]))
    de_first = [first.suggest(f"t{index}") for index in range(4)]
    de_reordered = [reordered.suggest(f"t{index}") for index in range(4)]
    assert [s for s in de_first if s["target_lang"] == "de"] == [s for s in de_reordered if s["target_lang"] == "de"]

    first.on_trial_complete("t0", {"objective_score": 0.7, "completed": True})  # de, finished
    first.on_trial_complete("t1", {"objective_score": 0.4})  # fr, stopped early: pruned
    first.on_trial_complete("t2", None, error=True)  # de, failed
    assert [trial.state for trial in first.studies["de"]._ot_study.trials] == [TRIAL_STATE.COMPLETE, TRIAL_STATE.FAIL]
    assert [trial.state for trial in first.studies["fr"]._ot_study.trials][0] == TRIAL_STATE.PRUNED

    first.save(str(tmp_path / "state.pkl"))
    restored = PairwiseSearch(search_sweep(["de", "fr"]))
    restored.restore(str(tmp_path / "state.pkl"))
    assert restored.studies["de"]._ot_study.trials[0].value == 0.7
    assert restored.suggest("t4") == PairwiseSearch.FINISHED


def test_pairwise_asha_compares_trials_of_the_same_pair_only():
    sweep = search_sweep(
        ["de", "it"],
        scheduler="asha",
        phase2={"full_steps": 4, "sparse_steps": 4},
        asha={"grace_period_steps": 2, "reduction_factor": 2},
    )
    scheduler = PairwiseAsha(sweep)
    languages = {"a": "de", "b": "de", "c": "it", "d": "it"}
    trials = [SimpleNamespace(trial_id=name, config={"target_lang": lang}) for name, lang in languages.items()]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    decisions = [
        scheduler.on_trial_result(None, trial, {"phase2_step": 2, "objective_score": score})
        for trial, score in zip(trials, [0.9, 0.8, 0.3, 0.2])
    ]
    # One ASHA over all trials would also stop "c", the best Italian trial, for trailing German ones.
    assert decisions == ["CONTINUE", "STOP", "CONTINUE", "STOP"]


def test_concurrency_is_what_the_cluster_runs_without_starving_a_trial():
    from bistil_ray.errors import UserInputError
    from bistil_ray.orchestration.driver import usable_concurrency
    from bistil_ray.orchestration.sweep_config import ResourcesConfig

    two_workers = ResourcesConfig(workers_per_trial=2, cpus_per_worker=1, concurrent_trials=8)
    assert usable_concurrency(two_workers, {"CPU": 5, "trial_driver": 8}) == 2
    assert usable_concurrency(two_workers, {"CPU": 16, "trial_driver": 3}) == 3
    gpus = ResourcesConfig(workers_per_trial=2, use_gpu=True, gpus_per_worker=1, concurrent_trials=8)
    assert usable_concurrency(gpus, {"CPU": 64, "GPU": 4, "trial_driver": 8}) == 2
    with pytest.raises(UserInputError, match="a trial needs 2 GPU but the cluster has 1"):
        usable_concurrency(gpus, {"CPU": 64, "GPU": 1, "trial_driver": 8})
    with pytest.raises(UserInputError, match="trial_driver"):
        usable_concurrency(two_workers, {"CPU": 64})


def test_the_task_teacher_trains_on_the_cpus_of_every_concurrent_trial():
    from bistil_ray.orchestration.driver import task_teacher_group
    from bistil_ray.orchestration.sweep_config import ResourcesConfig

    one_cpu = ResourcesConfig(workers_per_trial=1, cpus_per_worker=1)
    assert task_teacher_group(one_cpu, 2, [{"CPU": 2.0}]).cpus_per_worker == 2
    assert task_teacher_group(one_cpu, 1, [{"CPU": 2.0}]).cpus_per_worker == 1
    # Two 1-CPU nodes: no node holds a 2-CPU worker, so the teacher keeps a trial's size.
    assert task_teacher_group(one_cpu, 2, [{"CPU": 1.0}, {"CPU": 1.0}]).cpus_per_worker == 1
    two_workers = ResourcesConfig(workers_per_trial=2, cpus_per_worker=2)
    # Three trials' worth (6 CPUs a worker) fits one worker only; two trials' worth places both.
    wide = task_teacher_group(two_workers, 3, [{"CPU": 8.0}, {"CPU": 4.0}])
    assert (wide.workers, wide.cpus_per_worker) == (2, 4)
    gpus = ResourcesConfig(workers_per_trial=1, use_gpu=True, cpus_per_worker=1, gpus_per_worker=1)
    assert task_teacher_group(gpus, 4, [{"CPU": 16.0, "GPU": 4.0}]).cpus_per_worker == 1


def test_every_pairs_study_is_kept_in_an_optuna_journal_that_optuna_reads_back(tmp_path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "optuna.journal"
    search = PairwiseSearch(search_sweep(["de", "fr"]), journal)
    suggestions = [search.suggest(f"t{index}") for index in range(3)]
    search.on_trial_complete("t0", {"objective_score": 0.7, "completed": True})  # de
    search.on_trial_complete("t1", {"objective_score": 0.4})  # fr, stopped early
    search.save(str(tmp_path / "state.pkl"))  # t2 (de) still running
    search.on_trial_complete("t2", None, error=True)

    storage = JournalStorage(JournalFileBackend(str(journal)))
    assert sorted(optuna.get_all_study_names(storage=storage)) == ["s-de", "s-fr"]
    de = optuna.load_study(study_name="s-de", storage=storage)
    assert [trial.state for trial in de.trials] == [TRIAL_STATE.COMPLETE, TRIAL_STATE.FAIL]
    assert de.trials[0].value == 0.7 and de.trials[0].params["density"] == suggestions[0]["density"]
    assert optuna.load_study(study_name="s-fr", storage=storage).trials[0].state == TRIAL_STATE.PRUNED

    # A driver killed after t2 ended but before its searcher was checkpointed: t2 runs again.
    restored = PairwiseSearch(search_sweep(["de", "fr"]), journal)
    restored.restore(str(tmp_path / "state.pkl"))
    restored.on_trial_result("t2", {"objective_score": 0.9, "training_iteration": 1})
    restored.on_trial_complete("t2", {"objective_score": 0.9, "completed": True})
    assert [trial.state for trial in optuna.load_study(study_name="s-de", storage=storage).trials] == [TRIAL_STATE.COMPLETE, TRIAL_STATE.FAIL]


def test_a_single_objective_study_keeps_each_trials_intermediate_scores(tmp_path):
    search = PairwiseSearch(search_sweep(["de"]), tmp_path / "optuna.journal")
    search.suggest("t0")
    for iteration, score in ((1, 0.5), (2, 0.6)):
        search.on_trial_result("t0", {"objective_score": score, "training_iteration": iteration})
    search.on_trial_result("t0", {"training_iteration": 3})  # a report without a score: nothing to keep
    search.on_trial_result("t0", {"objective_score": None, "training_iteration": 4})  # a failed trial's
    search.on_trial_complete("t0", {"objective_score": 0.6, "completed": True})
    assert search.studies["de"]._ot_study.trials[0].intermediate_values == {1: 0.5, 2: 0.6}
