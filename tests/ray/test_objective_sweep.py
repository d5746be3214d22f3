"""The search objective, end to end: tiny sweeps with the real pipeline on a tiny BERT, one per
objective (source validation, target validation) and task (local files, the built-in task).

What Optuna maximised (`objective_score`, and each study's trial values) must be the validation
score the objective names, never the target test score; with ASHA, every phase-2 report it compares
trials by must be that score too. The four sweeps share one storage, so the second sweep of a task
reuses the first one's task teacher, vocabulary and phase-1 student.
"""

from __future__ import annotations

import json
import pickle
from collections import Counter

import pytest
from tiny_task import GERMAN, TOPICS, files_task, tiny_teacher

from bistil_ray.data import chatterbot
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.sweep_config import SweepConfig

def chatterbot_words(count: int = 400) -> list[str]:
    counts = Counter(
        word.strip(".,?!'\"").lower() for lang in ("en", "de") for text in chatterbot.read_language(lang).utterances
        for word in text.split()
    )  # fmt: skip
    return [word for word, _ in counts.most_common(count) if word]


TINY = {
    "target_langs": ["de"],
    "task_teacher": {"steps": 4, "eval_every": 4, "batch_size": 8, "lr": 1e-3},
    "vocabulary": {"word_frequencies": False},
    "student": {"layers": 2},
    "phase1": {"steps": 2, "eval_every": 2, "batch_size": 8, "validation_sentences": 8},
    "phase2": {"full_steps": 2, "sparse_steps": 2, "eval_every": 2, "batch_size": 8, "lr": 1e-3},
    "trials_per_pair": 1,
    "resources": {"workers_per_trial": 1, "concurrent_trials": 1, "report_poll_interval_s": 0.2},
}
FINAL_SCORE = {"source_validation": "source_score", "target_validation": "target_validation_score"}


def reported_results(paths: SweepPaths) -> list[dict]:
    """Every result the trials reported to Tune, in order (Tune's result.json, one per line)."""
    return [json.loads(line) for path in paths.experiment.glob("trial-*/result.json") for line in path.open()]


@pytest.mark.timeout(900)
def test_each_objective_is_the_validation_score_it_names(tmp_path, cluster):
    from bistil_ray.orchestration.driver import run_sweep

    tasks = {
        "files": {**files_task(tmp_path / "files"), "teacher": str(tiny_teacher(tmp_path / "t-files", sum(
            TOPICS.values(), list(GERMAN.values()))))},
        "builtin": {"task": {"builtin": "chatterbot"}, "teacher": str(tiny_teacher(tmp_path / "t-chat", chatterbot_words()))},
    }  # fmt: skip
    storage = tmp_path / "storage"
    for task_name, task_settings in tasks.items():
        for objective in ("source_validation", "target_validation"):
            # ASHA on the target-validation sweeps: what it compares trials by is the objective too.
            scheduler = {"scheduler": "asha", "asha": {"grace_period_steps": 1}} if objective == "target_validation" else {}
            name = f"{task_name}-{objective.replace('_', '-')}"
            sweep = SweepConfig.model_validate(
                {**TINY, **task_settings, **scheduler, "name": name, "objective": {"score": objective}}
            )
            paths = SweepPaths(storage, name)
            [row] = run_sweep(sweep, paths, resume=False, address=cluster.address, live=False)

            assert row["status"] == "ok", row["error"]
            named = row[FINAL_SCORE[objective]]
            assert row["objective_score"] == named
            assert row["target_validation_score"] is not None and row["teacher_target_validation_score"] is not None
            assert row["target_score"] != named, "the test and validation sets must tell the two apart"
            state = pickle.loads(next(paths.experiment.glob("searcher-state-*.pkl")).read_bytes())
            assert [trial.value for trial in state["studies"]["de"]._ot_study.trials] == [named]
            phase2_reports = [result for result in reported_results(paths) if "phase2_step" in result and "phase" in result]
            if objective == "target_validation":
                assert [report["phase2_step"] for report in phase2_reports] == [2, 4]
                assert all(r["objective_score"] == r["target_validation_score"] for r in phase2_reports)
            else:
                assert phase2_reports == []
            if objective == "target_validation":  # the second sweep of the task: everything shared reused
                assert row["task_teacher_cache_hit"] and row["vocab_cache_hit"] and row["phase1_cache_hit"]
