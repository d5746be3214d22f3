"""One store for single runs and sweeps: a tiny pair built by `run --storage S` is reused by a sweep
on `S` (cache hits in trials.parquet); an edited phase-1 text file is rebuilt by both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_task import GERMAN, TINY_SETTINGS, TOPICS, files_task, tiny_teacher

from bistil_ray.config import RunConfig
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.results_schema import NOT_TABULATED, TRIALS_SCHEMA
from bistil_ray.orchestration.sweep_config import SweepConfig
from bistil_ray.steps import SHARED_STEPS

SWEEP_ONLY = {
    "target_langs": ["de"],
    "trials_per_pair": 1,
    "resources": {"workers_per_trial": 1, "concurrent_trials": 1, "report_poll_interval_s": 0.2},
}


@pytest.mark.timeout(600)
def test_a_run_and_a_sweep_on_one_storage_share_every_artifact_and_rebuild_an_edited_corpus(tmp_path, cluster):
    from bistil_ray.orchestration.driver import run_sweep
    from bistil_ray.run import run

    settings = {
        **TINY_SETTINGS,
        **files_task(tmp_path / "files"),
        "teacher": str(tiny_teacher(tmp_path / "teacher", sum(TOPICS.values(), list(GERMAN.values())))),
    }
    storage = tmp_path / "storage"

    def single_run() -> dict:
        config = RunConfig.model_validate({**settings, "target_lang": "de", "output_dir": str(tmp_path / "runs")})
        return run(config, storage)

    def sweep(name: str) -> dict:
        config = SweepConfig.model_validate({**settings, **SWEEP_ONLY, "name": name})
        [row] = run_sweep(config, SweepPaths(storage, name), resume=False, address=cluster.address, live=False)
        assert row["status"] == "ok", row["error"]
        return row

    built = single_run()
    reused = sweep("after-run")
    recorded = json.loads(next((storage / "after-run" / "results").glob("*.json")).read_text())
    assert set(recorded) - set(TRIALS_SCHEMA.names) - set(NOT_TABULATED) == set()
    assert reused["target_macro_f1"] is not None and reused["teacher_source_score"] == built["teacher_source_score"]
    assert reused["student_throughput"] > 0 and reused["gpu_speedup"] is None and reused["scored_on"] == "cpu"
    assert [reused[f"{step.column}_cache_hit"] for step in SHARED_STEPS] == [True, True, True, True]
    assert [reused[f"{step.column}_key"] for step in SHARED_STEPS] == [built[f"{step.column}_key"] for step in SHARED_STEPS]

    german_text = Path(settings["corpora"]["de"]["file"])
    german_text.write_text(german_text.read_text() + "\nbrot suppe apfel tor")
    edited = sweep("after-edit")
    assert [edited[f"{step.column}_cache_hit"] for step in SHARED_STEPS] == [True, False, False, True]
    rebuilt = single_run()
    assert [rebuilt[f"{step.column}_key"] for step in SHARED_STEPS] == [edited[f"{step.column}_key"] for step in SHARED_STEPS]
    assert rebuilt["phase2_key"] != built["phase2_key"]
    assert rebuilt["vocab_key"] != built["vocab_key"]
