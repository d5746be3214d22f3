"""The claims benchmark end to end on a tiny teacher and a tiny files task: every model built and every
ordering judged, and a table that grows over runs whose work folders are gone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from tiny_task import GERMAN, TINY_SETTINGS, TOPICS, files_task, tiny_teacher

from bench import claims, claims_statistics

TINY_RUN = {**TINY_SETTINGS, "target_lang": "de"}


def test_claims_command_builds_every_model_and_judges_each_ordering(tmp_path: Path):
    teacher = tiny_teacher(tmp_path / "teacher", [*sum(TOPICS.values(), []), *GERMAN.values()])
    config = tmp_path / "run.yaml"
    own_lr = {**TINY_RUN["task_teacher"], "per_method": {"frozen_body": {"lr": 2e-3}}}
    config.write_text(yaml.safe_dump({**TINY_RUN, **files_task(tmp_path / "files"), "teacher": str(teacher), "task_teacher": own_lr}))
    out = tmp_path / "results"
    argv = [str(config), "--langs", "de", "--seeds", "0", "1", "--budget-curve", "de", "--recipe-steps", "frozen_body=3",
            "--work-dir", str(tmp_path / "work"), "--out", str(out)]  # fmt: skip
    claims.main(argv)
    probe_settings = json.loads((tmp_path / "work" / "train" / "task_teacher-frozen_body" / "bistil_artifact.json").read_text())["inputs"]
    assert probe_settings["config"]["steps"] == 3 and probe_settings["config"]["lr"] == 2e-3  # the flag's steps, the config's lr

    rows = pq.read_table(out / "claims-train.parquet").to_pylist()
    assert {"task", "target_lang", "seed", "model", "target_score", "source_score", "params", "throughput"} <= set(rows[0])
    assert {"phase1_steps", "phase2_steps", "phase2_seconds"} <= set(rows[0])  # the students' fields, though the first row is a teacher's
    built = {(row["model"], row["seed"]) for row in rows}
    assert built == {("teacher:full", None), ("teacher:lt_sft", None), ("teacher:frozen_body", None),
                     ("trimmed_teacher", None), ("scratch", 0)} | {(m, s) for m in ("bistil", "no_phase1", "multilingual") for s in (0, 1)}  # fmt: skip
    for row in rows:
        assert row["test_examples"] == 10 and 0 <= row["target_score"] <= 1
        if row["seed"] in (None, 0):
            assert row["throughput"] > 0, row["model"]
    trimmed = next(row for row in rows if row["model"] == "trimmed_teacher")
    assert trimmed["vocab_size"] < next(row for row in rows if row["model"] == "teacher:full")["vocab_size"]

    record = json.loads((out / "claims-train.json").read_text())
    assert [claim["claim"] for claim in record["claims"]] == [claim.name for claim in claims_statistics.CLAIMS]
    for claim in record["claims"]:
        for cell in claim["by_language"].values():
            assert cell["low"] <= cell["difference"] <= cell["high"] and 0 <= cell["agreement"] <= 1
    assert 0 <= record["seed_agreement"]["de"] <= 1 and "## How alike the models are" in (out / "claims-train.md").read_text()
    assert record["claims"][2]["by_language"]["de"]["seeds"] == 2  # bistil and multilingual: paired by seed
    assert {(row["model"], row["phase1_steps"]) for row in record["budget_curve"]} == {
        ("bistil", 2), ("bistil", 4), ("bistil", 8), ("multilingual", 2), ("multilingual", 4), ("multilingual", 8), ("no_phase1", 0)
    }  # fmt: skip
    first_seed = {row["model"]: row for row in rows if row["seed"] == 0}
    for point in record["budget_curve"]:  # 1x and no_phase1 are the table's own rows, not trained again
        if point["phase1_factor"] <= 1:
            assert point["target_score"] == first_seed[point["model"]]["target_score"], point["model"]
    assert "paired bootstrap" in (out / "claims-train.md").read_text()
    assert (out / "claims.png").stat().st_size > 0
    assert pq.read_table(out / "claims.parquet").num_rows == len(rows)
    assert json.loads((out / "claims.json").read_text())["tasks"]["train"]["claims"] == record["claims"]

    claims.main(argv)  # everything reused: the same table, still named for the machine that measured it
    assert pq.read_table(out / "claims-train.parquet").to_pylist()[0]["target_score"] == rows[0]["target_score"]
    assert json.loads((out / "claims-train.json").read_text())["machine"] == record["machine"]

    shutil.rmtree(tmp_path / "work")  # a later session asks for the curve: only its 2x and 4x students train
    (out / "claims-train.json").write_text(json.dumps({key: value for key, value in record.items() if key != "budget_curve"}))
    claims.main(argv)
    assert not (tmp_path / "work" / "train" / "de" / "seed0").exists()
    assert (tmp_path / "work" / "train" / "budget" / "de" / "x4" / "multilingual").exists()
    assert json.loads((out / "claims-train.json").read_text())["budget_curve"] == record["budget_curve"]


def test_claims_table_grows_over_runs_whose_work_folders_are_gone(tmp_path: Path, capsys):
    teacher = tiny_teacher(tmp_path / "teacher", [*sum(TOPICS.values(), []), *GERMAN.values()])
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**TINY_RUN, **files_task(tmp_path / "files"), "teacher": str(teacher)}))
    out, work = tmp_path / "results", tmp_path / "work"
    argv = [str(config), "--langs", "de", "--seeds", "0", "1", "--recipes", "full", "--work-dir", str(work), "--out", str(out)]
    claims.main(argv)
    table = pq.read_table(out / "claims-train.parquet").to_pylist()
    assert all(len(row["correct"]) == row["test_examples"] for row in table)

    shutil.rmtree(work)  # a later session: the committed table, not the models
    claims.main(argv)
    assert not work.exists()  # every (language, seed) scored: nothing rebuilt
    assert pq.read_table(out / "claims-train.parquet").to_pylist() == table

    shutil.rmtree(work, ignore_errors=True)
    kept = [row for row in table if (row["model"], row["seed"]) != ("multilingual", 1)]
    pq.write_table(pa.Table.from_pylist(kept), out / "claims-train.parquet")
    claims.main(argv)  # rebuilds the task teacher (its weights must match the rows') and that student only
    assert (work / "train" / "de" / "seed1" / "multilingual").exists()
    assert not (work / "train" / "de" / "seed1" / "bistil").exists()
    timeless = lambda rows: sorted(({k: v for k, v in row.items() if k != "phase2_seconds"} for row in rows), key=str)  # noqa: E731
    assert timeless(pq.read_table(out / "claims-train.parquet").to_pylist()) == timeless(table)  # deterministic: the same row

    # Rows whose teacher another machine built: a rebuild here cannot match them, and the error says where each came from.
    shutil.rmtree(work)
    rows = [{**row, "weights_sha256": row["weights_sha256"] and "0" * 64} for row in pq.read_table(out / "claims-train.parquet").to_pylist()]
    pq.write_table(pa.Table.from_pylist([row for row in rows if (row["model"], row["seed"]) != ("multilingual", 1)]), out / "claims-train.parquet")
    report = json.loads((out / "claims-train.json").read_text())
    (out / "claims-train.json").write_text(json.dumps({**report, "machine": {**report["machine"], "cpu": "Other CPU (AVX2)"}}))
    before = (out / "claims-train.parquet").read_bytes()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        claims.main(argv)
    error = capsys.readouterr().err
    assert exited.value.code == 2 and "rows made on Other CPU (AVX2), this machine" in error and "differs" in error
    assert (out / "claims-train.parquet").read_bytes() == before

    (out / "claims-train.parquet").write_bytes(b"PAR1")  # a broken table is an error naming it, never silently replaced
    with pytest.raises(SystemExit) as exited:
        claims.main(argv)
    assert exited.value.code == 2 and (out / "claims-train.parquet").read_bytes() == b"PAR1"


def test_claims_on_a_token_task_score_words_and_resample_sentences(tmp_path: Path):
    from tiny_token_task import ENTITIES, FILLER, token_task_files

    teacher = tiny_teacher(tmp_path / "teacher", [*ENTITIES, *FILLER["en"], *FILLER["de"]])
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**TINY_RUN, **token_task_files(tmp_path / "files", "pos"), "teacher": str(teacher)}))
    out = tmp_path / "results"
    claims.main([str(config), "--langs", "de", "--seeds", "0", "--recipes", "full", "--work-dir", str(tmp_path / "work"), "--out", str(out)])
    rows = pq.read_table(out / "claims-train.parquet").to_pylist()
    assert {row["model"] for row in rows} == {"teacher:full", "trimmed_teacher", "bistil", "no_phase1", "scratch", "multilingual"}
    for row in rows:
        assert row["test_examples"] == len(row["units"]) == 12  # sentences
        assert len(row["correct"]) == sum(row["units"]) == 48  # words
        assert row["target_score"] == pytest.approx(sum(row["correct"]) / 48)
    report = (out / "claims-train.md").read_text()
    assert "test token accuracy" in report and "bootstrap over test sentences" in report


def test_a_second_phase2_setting_trains_only_the_named_students_beside_the_first_settings(tmp_path: Path):
    teacher = tiny_teacher(tmp_path / "teacher", [*sum(TOPICS.values(), []), *GERMAN.values()])
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**TINY_RUN, **files_task(tmp_path / "files"), "teacher": str(teacher)}))
    work = tmp_path / "work"
    first = [str(config), "--langs", "de", "--seeds", "0", "--recipes", "full", "--students", "bistil", "--work-dir", str(work)]
    claims.main([*first, "--set", "phase2.target_text_ratio=0", "--out", str(tmp_path / "source-only")])
    seed_folder = work / "train" / "de" / "seed0"
    phase1 = json.loads((seed_folder / "bistil" / "phase1_student" / "bistil_artifact.json").read_text())
    source_only = (seed_folder / "bistil" / "student" / "model.safetensors").read_bytes()

    second = [*first[:-3], "bistil", "no_phase1", "--work-dir", str(work), "--set", "phase2.target_text_ratio=0.5"]
    claims.main([*second, "--out", str(tmp_path / "target-text")])
    rows = pq.read_table(tmp_path / "target-text" / "claims-train.parquet").to_pylist()
    assert {(row["model"], row["seed"]) for row in rows} == {("teacher:full", None), ("trimmed_teacher", None), ("bistil", 0), ("no_phase1", 0)}
    assert json.loads((seed_folder / "bistil" / "phase1_student" / "bistil_artifact.json").read_text()) == phase1  # reused
    assert (seed_folder / "bistil" / "student" / "model.safetensors").read_bytes() == source_only  # kept
    assert (seed_folder / "bistil" / "student-target-text-0.5" / "model.safetensors").exists()
    assert not (seed_folder / "multilingual").exists() and not (seed_folder / "scratch").exists()
