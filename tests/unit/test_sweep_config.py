"""The sweep YAML schema and the `python -m bistil_ray.sweep` CLI, without Ray."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from bistil_ray.errors import UserInputError
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.plan import describe_plan
from bistil_ray.orchestration.search_space import DIMENSIONS, SearchSpace
from bistil_ray.orchestration.sweep_config import SweepConfig, load_sweep
from bistil_ray.sweep import main

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"

MINIMAL = {"name": "t", "target_langs": ["de", "fr"]}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def error_of(tmp_path: Path, data: dict, overrides: list[str] = ()) -> str:
    with pytest.raises(UserInputError) as caught:
        load_sweep(write(tmp_path, data), list(overrides))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_minimal_sweep_gets_defaults_and_one_trial_config_per_pair(tmp_path):
    sweep = load_sweep(write(tmp_path, MINIMAL))
    assert sweep.pairs == ["en-de", "en-fr"]
    assert sweep.total_trials == 2 * sweep.trials_per_pair
    run = sweep.run_config("fr", {"density": 0.2, "student_layers": 4, "vocab_threshold": 1e-5})
    assert (run.target_lang, run.phase2.density, run.student.layers, run.vocabulary.threshold) == ("fr", 0.2, 4, 1e-5)
    assert run.phase2.lr == sweep.phase2.lr  # unsearched settings keep their section's value


def test_unknown_key_names_the_path_and_suggests_the_closest(tmp_path):
    assert "trails_per_pair: unknown key; did you mean 'trials_per_pair'?" in error_of(
        tmp_path, {**MINIMAL, "trails_per_pair": 3}
    )
    nested = error_of(tmp_path, {**MINIMAL, "search_space": {"density": {"unifrom": [0.1, 0.2]}}})
    assert "search_space.density.unifrom: unknown key; did you mean 'uniform'?" in nested
    assert "resources.cpu_per_worker: unknown key; did you mean 'cpus_per_worker'?" in error_of(
        tmp_path, {**MINIMAL, "resources": {"cpu_per_worker": 2}}
    )


def test_wrong_types_name_the_field(tmp_path):
    wrong_type = error_of(tmp_path, {**MINIMAL, "trials_per_pair": "many"})
    assert "trials_per_pair: Input should be a valid integer" in wrong_type
    assert "search_space.lr: 'fast': Input should be a valid number" in error_of(
        tmp_path, {**MINIMAL, "search_space": {"lr": "fast"}}
    )
    assert "search_space.lr: expected a number, a name or a mapping" in error_of(
        tmp_path, {**MINIMAL, "search_space": {"lr": [1, 2]}}
    )
    assert "search_space.student_layers: student.layers is a whole number" in error_of(
        tmp_path, {**MINIMAL, "search_space": {"student_layers": {"uniform": [2, 6]}}}
    )


def test_density_out_of_range_is_rejected_wherever_it_is_set(tmp_path):
    searched = error_of(tmp_path, {**MINIMAL, "search_space": {"density": {"uniform": [0.05, 1.5]}}})
    assert "search_space.density: 1.5: Input should be less than or equal to 1" in searched
    fixed = error_of(tmp_path, {**MINIMAL, "phase2": {"density": 0}})
    assert "phase2.density: Input should be greater than 0" in fixed
    reversed_range = error_of(tmp_path, {**MINIMAL, "search_space": {"density": {"uniform": [0.3, 0.1]}}})
    assert "search_space.density" in reversed_range and "low bound must be below" in reversed_range


def test_student_deeper_than_the_teacher_is_rejected(tmp_path):
    message = error_of(tmp_path, {**MINIMAL, "search_space": {"student_layers": {"choice": [6, 24]}}})
    assert "search_space.student_layers: 24 layers is deeper than the teacher" in message
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "config.json").write_text(json.dumps({"num_hidden_layers": 4}))
    local = error_of(tmp_path, {**MINIMAL, "teacher": str(teacher), "student": {"layers": 6}})
    assert "student.layers: 6 layers is deeper than the teacher" in local and "4 layers" in local


def test_pair_of_one_language_and_duplicates_are_rejected(tmp_path):
    same = error_of(tmp_path, {**MINIMAL, "target_langs": ["de", "en"]})
    assert "target_langs.1: 'en' is the source language" in same
    assert "target_langs.2: 'de' is listed twice" in error_of(tmp_path, {**MINIMAL, "target_langs": ["de", "fr", "de"]})


def test_cross_field_rules(tmp_path):
    asha = error_of(tmp_path, {**MINIMAL, "scheduler": "asha", "objective": {"multi_objective": True}})
    assert "scheduler: asha stops trials by one score" in asha
    hub_task = {"hub": {"path": "facebook/xnli", "config": "{lang}"}}
    target = error_of(tmp_path, {**MINIMAL, "task": hub_task, "objective": {"score": "target_validation"}})
    assert "objective.score: target_validation needs a target validation set" in target and "de, fr" in target
    # The built-in task has a target validation split for these languages.
    assert load_sweep(write(tmp_path, {**MINIMAL, "objective": {"score": "target_validation"}})).objective.score


def test_set_overrides_apply_and_are_validated(tmp_path):
    sweep = load_sweep(write(tmp_path, MINIMAL), ["trials_per_pair=7", "resources.concurrent_trials=3"])
    assert (sweep.trials_per_pair, sweep.resources.concurrent_trials) == (7, 3)
    assert "search_space.density: 2: Input should be less than or equal to 1" in error_of(
        tmp_path, MINIMAL, ["search_space.density=2"]
    )


def test_every_dimension_maps_to_a_run_setting_and_an_optuna_distribution(tmp_path):
    assert set(SearchSpace.model_fields) == set(DIMENSIONS)
    data = {
        **MINIMAL,
        "search_space": {
            "student_layers": {"integer": [2, 4]},
            "density": {"loguniform": [0.01, 0.2]},
            "temperature": {"choice": [1, 2]},
            "lr": 3e-5,
        },
    }
    dimensions = load_sweep(write(tmp_path, data)).dimensions()
    assert dimensions["student_layers"].distribution() == optuna.distributions.IntDistribution(2, 4)
    assert dimensions["density"].distribution() == optuna.distributions.FloatDistribution(0.01, 0.2, log=True)
    assert dimensions["temperature"].distribution() == optuna.distributions.CategoricalDistribution([1, 2])
    assert not dimensions["lr"].is_searched and dimensions["lr"].values() == [3e-5]
    assert dimensions["alpha_ce"].values() == [SweepConfig(**MINIMAL).phase2.alpha_ce]


def test_a_sweep_may_choose_the_task_teacher_recipe(tmp_path):
    data = {**MINIMAL, "search_space": {"teacher_method": {"choice": ["full", "lt_sft"]}}}
    sweep = load_sweep(write(tmp_path, data))
    dimension = sweep.dimensions()["teacher_method"]
    assert dimension.distribution() == optuna.distributions.CategoricalDistribution(["full", "lt_sft"])
    assert dimension.describe() == "choice full, lt_sft"
    values = {name: d.extremes()[0] for name, d in sweep.dimensions().items()} | {"teacher_method": "lt_sft"}
    assert sweep.run_config(MINIMAL["target_langs"][0], values).task_teacher.method == "lt_sft"
    assert SweepConfig(**MINIMAL).dimensions()["teacher_method"].values() == ["full"]
    with pytest.raises(UserInputError, match="search_space.teacher_method: 'probe': Input should be 'full', 'lt_sft' or"):
        load_sweep(write(tmp_path, {**MINIMAL, "search_space": {"teacher_method": {"choice": ["full", "probe"]}}}))


def test_each_recipe_a_sweep_chooses_trains_with_its_own_settings(tmp_path):
    data = {**MINIMAL, "task_teacher": {"lr": 5e-5, "steps": 400, "per_method": {"frozen_body": {"lr": 1e-3, "steps": 1600}}},
            "search_space": {"teacher_method": {"choice": ["full", "frozen_body"]}}}  # fmt: skip
    sweep = load_sweep(write(tmp_path, data))
    values = {name: d.extremes()[0] for name, d in sweep.dimensions().items()}
    probe = sweep.run_config(MINIMAL["target_langs"][0], values | {"teacher_method": "frozen_body"}).task_teacher.resolved()
    full = sweep.run_config(MINIMAL["target_langs"][0], values | {"teacher_method": "full"}).task_teacher.resolved()
    assert (probe.lr, probe.steps, full.lr, full.steps) == (1e-3, 1600, 5e-5, 400)
    assert "one per recipe; full 400 steps, frozen_body 1600 steps" in describe_plan(sweep, SweepPaths(tmp_path, sweep.name))
    with pytest.raises(UserInputError, match="task_teacher.per_method.probe"):
        load_sweep(write(tmp_path, {**MINIMAL, "task_teacher": {"per_method": {"probe": {"lr": 1e-3}}}}))
    with pytest.raises(UserInputError, match="lt_sft needs steps >= 2"):
        load_sweep(write(tmp_path, {**MINIMAL, "task_teacher": {"method": "lt_sft", "per_method": {"lt_sft": {"steps": 1}}}}))


# --- the CLI ---------------------------------------------------------------------------------------


def test_cli_invalid_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    config = write(tmp_path, {**MINIMAL, "search_space": {"density": {"uniform": [0.1, 3.0]}}})
    storage = tmp_path / "storage"
    with pytest.raises(SystemExit) as exited:
        main([str(config), "--storage", str(storage)])
    assert exited.value.code == 2
    stderr = capsys.readouterr().err.strip()
    assert stderr.startswith("bistil_ray.sweep: error:") and "search_space.density" in stderr
    assert len(stderr.splitlines()) == 1
    assert not storage.exists()


def test_cli_rejects_remote_storage_and_missing_file(tmp_path, capsys):
    for argv in ([str(write(tmp_path, MINIMAL)), "--storage", "s3://bucket/x"], [str(tmp_path / "missing.yaml")]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
    assert "missing.yaml: no such file" in capsys.readouterr().err


def test_each_pair_of_the_demo_draws_both_depths():
    from bistil_ray.orchestration.tuning import PairwiseSearch

    sweep = load_sweep(SWEEPS / "demo.yaml")
    search = PairwiseSearch(sweep)
    draws = [search.suggest(f"trial-{index}") for index in range(sweep.total_trials)]
    for target in sweep.target_langs:
        assert {draw["student_layers"] for draw in draws if draw["target_lang"] == target} == {3, 6}


@pytest.mark.parametrize(
    ("sweep_file", "expected"),
    [
        ("demo.yaml", ["pairs (2): en-zh, en-it", "4 in all", "phase-1 students     up to 4", "student_layers    choice 3, 6"]),
        ("xnli.yaml", ["pairs (14): en-ar, en-bg", "112 in all", "multi-objective", "1 GPU per training phase"]),
        ("xquad.yaml", ["(question answering)", "pairs (10): en-ar, en-de", "80 in all", "multi-objective", "1 GPU per training phase"]),
        ("wikiann.yaml", ["task unimelb-nlp/wikiann/{lang} (token classification)", "pairs (12): en-ar, en-de", "72 in all", "multi-objective", "1 GPU per training phase"]),
    ],
)
def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys, sweep_file, expected):
    storage = tmp_path / "storage"
    assert main([str(SWEEPS / sweep_file), "--dry-run", "--storage", str(storage)]) == 0
    plan = capsys.readouterr().out
    for text in expected:
        assert text in plan
    assert not storage.exists()


def test_local_paths_become_absolute_for_trials_that_run_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "teacher").mkdir()
    (tmp_path / "de.txt").write_text("Hallo\n")
    sweep = SweepConfig(**MINIMAL, teacher="teacher", corpora={"de": {"file": "de.txt"}}).with_absolute_paths()
    assert sweep.teacher == str(tmp_path / "teacher")
    assert sweep.corpora["de"].file == tmp_path / "de.txt"
    assert SweepConfig(**MINIMAL, teacher="xlm-roberta-base").with_absolute_paths().teacher == "xlm-roberta-base"


def cli_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_storage_rules_for_new_and_resumed_sweeps(tmp_path, capsys):
    config, storage = str(write(tmp_path, MINIMAL)), tmp_path / "storage"
    assert "no sweep to resume" in cli_error([config, "--storage", str(storage), "--resume"], capsys)
    assert not storage.exists()

    experiment = storage / "t"
    experiment.mkdir(parents=True)
    (experiment / "tuner.pkl").write_bytes(b"")  # what Tune leaves once a sweep has started
    (experiment / "sweep.json").write_text(SweepConfig(**MINIMAL).model_dump_json())
    assert "already exists; pass --resume" in cli_error([config, "--storage", str(storage)], capsys)
    changed = cli_error([config, "--storage", str(storage), "--resume", "--set", "seed=9"], capsys)
    assert "--resume: seed differs" in changed
    assert "can only be raised" in cli_error([config, "--storage", str(storage), "--resume", "--set", "trials_per_pair=3"], capsys)


def test_a_finished_sweep_is_extended_by_raising_trials_per_pair_and_an_unfinished_one_is_not(tmp_path):
    from bistil_ray.orchestration.preflight import SweepStart, check_storage
    from bistil_ray.orchestration.results import write_table
    from bistil_ray.results_schema import TRIALS_SCHEMA

    paths = SweepPaths(tmp_path, "t")
    paths.experiment.mkdir()
    (paths.experiment / "tuner.pkl").write_bytes(b"")
    paths.config_snapshot.write_text(SweepConfig(**MINIMAL, trials_per_pair=2).model_dump_json())
    rows = [{"trial_id": f"{target}{index}", "target_lang": target} for target in ("de", "fr") for index in range(2)]
    write_table(paths.trials_table, rows[:3], TRIALS_SCHEMA)

    assert check_storage(SweepConfig(**MINIMAL, trials_per_pair=2), paths, resume=True) == SweepStart("resume", 2)
    with pytest.raises(UserInputError, match="pair en-fr has 1 of its 2 trials ended; resume with trials_per_pair 2"):
        check_storage(SweepConfig(**MINIMAL, trials_per_pair=5), paths, resume=True)
    write_table(paths.trials_table, rows, TRIALS_SCHEMA)
    start = check_storage(SweepConfig(**MINIMAL, trials_per_pair=5), paths, resume=True)
    assert start == SweepStart("extend", 2)
    assert "2 trials per pair ended: --resume extends it" in describe_plan(SweepConfig(**MINIMAL, trials_per_pair=5), paths, start)
