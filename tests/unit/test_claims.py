"""The claims benchmark's statistics (the paired bootstrap interval) and its arguments."""

from __future__ import annotations

import numpy as np
import pytest

from bench import claims, claims_statistics


def test_paired_bootstrap_interval_covers_the_difference_and_excludes_zero_only_when_it_should():
    rng = np.random.default_rng(1)
    better = rng.random((3, 400)) < 0.8
    worse = better & (rng.random((3, 400)) < 0.8)  # the same examples, 20% of the right ones lost
    difference, low, high = claims_statistics.paired_bootstrap({"de": list(zip(better, worse))}, np.random.default_rng(0))
    assert low <= difference <= high and low > 0.1
    same, low, high = claims_statistics.paired_bootstrap({"de": list(zip(better, better))}, np.random.default_rng(0))
    assert same == low == high == 0


def test_a_student_keeps_a_share_of_the_teacher_when_its_accuracy_is_above_that_share():
    rng = np.random.default_rng(2)
    teacher = rng.random((1, 2000)) < 0.5
    student = teacher & (rng.random((1, 2000)) < 0.985)  # loses 1.5% of the teacher's right answers
    keeps = claims_statistics.Claim("bistil", ">=", "teacher", "", claims_statistics.RETAINED)
    assert keeps.name == "bistil >= 0.97 x teacher"
    difference, low, high = claims_statistics.paired_bootstrap({"de": list(zip(student, teacher))}, np.random.default_rng(0), keeps.share)
    assert difference == pytest.approx(student.mean() - 0.97 * teacher.mean()) and difference > 0 and low <= difference <= high
    lost_more = teacher & (rng.random((1, 2000)) < 0.9)
    assert claims_statistics.paired_bootstrap({"de": list(zip(lost_more, teacher))}, np.random.default_rng(0), keeps.share)[0] < 0


def test_a_budget_curve_on_a_language_outside_the_table_is_refused_before_anything_is_read(capsys):
    with pytest.raises(SystemExit) as exited:
        claims.main(["missing.yaml", "--langs", "zh", "it", "--budget-curve", "ja"])
    assert exited.value.code == 2 and "--budget-curve: 'ja' is not one of --langs" in capsys.readouterr().err


def test_agreement_counts_examples_both_models_get_right_or_both_wrong():
    right = np.array([True, True, False, False])
    assert claims_statistics.agreement({"de": [(right, np.array([True, False, False, True]))]}) == 0.5
    assert claims_statistics.agreement({"de": [(right, right)], "fr": [(right, ~right)]}) == 0.5  # the mean over languages

    def run(seed, correct):
        return claims_statistics.Scored({"model": "bistil", "target_lang": "de", "seed": seed}, np.array(correct))

    by_seed = claims_statistics.seed_agreement([run(0, [1, 1, 0, 0]), run(1, [1, 1, 0, 1]), run(2, [1, 1, 1, 1])], ["de", "fr"])
    assert by_seed == {"de": (0.75 + 0.5 + 0.75) / 3, "mean": (0.75 + 0.5 + 0.75) / 3}  # fr: one seed or none, no entry


@pytest.mark.parametrize("item", ["frozen_body", "frozen_body=fast", "frozen_body=-1e-3", "frozen_body=nan", "frozen_body=inf", "probe=1e-3", "=1e-3"])
def test_a_malformed_recipe_learning_rate_is_one_line_naming_the_flag(item, capsys):
    with pytest.raises(SystemExit) as exited:
        claims.main(["missing.yaml", "--langs", "zh", "--recipe-lr", item])
    assert exited.value.code == 2 and f"--recipe-lr: {item!r} is not RECIPE=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("item", ["frozen_body=1.5", "frozen_body=0", "full", "lt_sft=many"])
def test_a_malformed_recipe_step_count_is_one_line_naming_the_flag(item, capsys):
    with pytest.raises(SystemExit) as exited:
        claims.main(["missing.yaml", "--langs", "zh", "--recipe-steps", item])
    assert exited.value.code == 2 and f"--recipe-steps: {item!r} is not RECIPE=VALUE" in capsys.readouterr().err


def tagged_run(model: str, seed: int, correct_by_sentence: list[list[bool]]) -> claims_statistics.Scored:
    """A token task's row: correctness per word, and each sentence's number of words."""
    flat = np.array([word for sentence in correct_by_sentence for word in sentence])
    units = np.array([len(sentence) for sentence in correct_by_sentence])
    return claims_statistics.Scored({"model": model, "target_lang": "de", "seed": seed}, flat, units)


def test_a_token_task_is_resampled_by_sentence_and_scored_by_word():
    run = tagged_run("bistil", 0, [[True, True, False], [True, False]])
    counts, units = run.per_example()
    assert counts.tolist() == [2, 1] and units.tolist() == [3, 2]
    # Sentences of unequal length: the difference is word accuracy's (5/6 - 1/6), not the mean of sentences'.
    left = tagged_run("bistil", 0, [[True] * 5, [False]])
    right = tagged_run("no_phase1", 0, [[False] * 4 + [True], [False]])
    judged = {c["claim"]: c for c in claims_statistics.judge([left, right], ["de"], "teacher:full")}
    assert judged["bistil > no_phase1"]["by_language"]["de"]["difference"] == pytest.approx(5 / 6 - 1 / 6)
    assert judged["bistil > no_phase1"]["by_language"]["de"]["agreement"] == pytest.approx(2 / 6)  # by word


def test_errors_that_cluster_in_sentences_widen_the_interval_against_words_drawn_alone():
    rng = np.random.default_rng(3)
    # 200 sentences of 10 words: the student loses whole sentences the teacher gets right.
    lost = rng.random(200) < 0.1
    teacher = [[True] * 10 for _ in range(200)]
    student = [[not gone] * 10 for gone in lost]
    by_sentence = [tagged_run(model, 0, sentences) for model, sentences in (("bistil", student), ("no_phase1", teacher))]
    by_word = [claims_statistics.Scored(r.row, r.correct) for r in by_sentence]  # the same words as independent examples
    widths = []
    for runs in (by_sentence, by_word):
        cell = {c["claim"]: c for c in claims_statistics.judge(runs, ["de"], "teacher:full")}["bistil > no_phase1"]["by_language"]["de"]
        assert cell["difference"] == pytest.approx(-lost.mean())
        widths.append(cell["high"] - cell["low"])
    assert widths[0] > 2 * widths[1]


def test_a_table_stays_comparable_when_only_placement_or_a_setting_left_at_its_default_differs():
    settings = {"task": "t", "langs": ["de"], "seeds": [0], "budget_lang": None,
                "run_config": {"phase2": {"lr": 1e-4}, "output_dir": "runs/a", "min_free_disk_mb": 1024}}  # fmt: skip
    moved = {**settings, "langs": ["fi"], "run_config": {**settings["run_config"], "output_dir": "runs/b", "min_free_disk_mb": 0}}
    assert claims.comparable(moved) == claims.comparable(settings)
    with_a_later_default = {**settings, "run_config": {**settings["run_config"], "phase2": {"lr": 1e-4, "temperature": 2.0}}}
    assert claims.comparable(with_a_later_default) == claims.comparable(settings)
    other_lr = {**settings, "run_config": {**settings["run_config"], "phase2": {"lr": 2e-4}}}
    assert claims.comparable(other_lr) != claims.comparable(settings)
