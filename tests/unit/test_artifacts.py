"""The content-addressed artifact store: keys, build-once under concurrency, atomic publication."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bistil_ray.atomic import TMP_PREFIX
from bistil_ray.config import RunConfig
from bistil_ray.artifacts import MANIFEST, ArtifactStore, artifact_key
from bistil_ray.config import RecipeSettings
from bistil_ray.steps import PHASE1_STUDENT, STEPS, TASK_TEACHER, Fingerprints, step_inputs

INPUTS = {"teacher": "abc", "settings": {"lr": 1e-4, "steps": 10}}


def slow_build(log: Path, seconds: float = 0.2):
    def build(out_dir: Path) -> dict:
        with open(log, "a") as handle:
            handle.write("built\n")
        time.sleep(seconds)
        (out_dir / "weights.bin").write_bytes(b"w")
        return {"vocab_size": 42}

    return build


def build_in_process(root: str, log: str) -> tuple[str, bool]:
    artifact = ArtifactStore(Path(root), poll_interval_s=0.02).get_or_build("vocabulary", INPUTS, slow_build(Path(log)))
    return str(artifact.path), artifact.cache_hit



def step_keys(run: RunConfig, prints: Fingerprints) -> dict[str, str]:
    """Every step's key for `run`, upstream first, as the executor computes them one by one."""
    keys: dict[str, str] = {}
    for step in STEPS.values():
        keys[step.kind] = artifact_key(step_inputs(step, run, prints, keys))
    return keys

def test_key_depends_on_content_not_on_key_order():
    reordered = {"settings": {"steps": 10, "lr": 1e-4}, "teacher": "abc"}
    assert artifact_key(INPUTS) == artifact_key(reordered)
    assert artifact_key(INPUTS) != artifact_key({**INPUTS, "settings": {"lr": 2e-4, "steps": 10}})


def test_keys_follow_what_each_artifact_depends_on():
    targets = {"de": "t-de", "fr": "t-fr"}
    prints = Fingerprints(teacher="t1", task="k1", corpora={"en": "c-en", "de": "c-de", "fr": "c-fr"}, targets=targets)
    base = RunConfig(target_lang="de")
    other_phase2 = base.model_copy(update={"phase2": base.phase2.model_copy(update={"density": 0.5})})
    deeper = base.model_copy(update={"student": base.student.model_copy(update={"layers": 4})})
    french = base.model_copy(update={"target_lang": "fr"})
    keys = step_keys(base, prints)

    assert step_keys(other_phase2, prints)["phase1_student"] == keys["phase1_student"]
    assert step_keys(other_phase2, prints)["phase2_student"] != keys["phase2_student"]
    assert step_keys(deeper, prints)["phase1_student"] != keys["phase1_student"]
    assert step_keys(deeper, prints)["vocabulary"] == keys["vocabulary"]
    assert step_keys(french, prints)["phase1_student"] != keys["phase1_student"]
    assert step_keys(french, prints)["task_teacher"] == keys["task_teacher"]
    changed_teacher = Fingerprints(teacher="t2", task="k1", corpora=prints.corpora, targets=targets)
    assert step_keys(base, changed_teacher)["task_teacher"] != keys["task_teacher"]
    edited_corpus = Fingerprints(teacher="t1", task="k1", corpora={**prints.corpora, "de": "c-de-edited"}, targets=targets)
    edited = step_keys(base, edited_corpus)
    assert edited["task_teacher"] == keys["task_teacher"] and edited["teacher_scores"] == keys["teacher_scores"]
    assert all(edited[kind] != keys[kind] for kind in ("vocabulary", "phase1_student", "phase2_student"))
    edited_test = Fingerprints(teacher="t1", task="k1", corpora=prints.corpora, targets={**targets, "de": "t-de-edited"})
    assert step_keys(base, edited_test)["teacher_scores"] != keys["teacher_scores"]
    assert step_keys(base, edited_test)["phase1_student"] == keys["phase1_student"]
    # An upstream key is part of the key: a phase-1 student is not shared across vocabularies.
    assert step_inputs(PHASE1_STUDENT, base, prints, keys)["vocabulary"] == keys["vocabulary"]
    assert "corpora" not in step_inputs(TASK_TEACHER, base, prints, keys)
    # A recipe's own settings key only that recipe's teacher.
    own = base.task_teacher.model_copy(update={"per_method": {"frozen_body": RecipeSettings(lr=1e-3, steps=1600)}})
    with_probe_settings = base.model_copy(update={"task_teacher": own})
    assert step_keys(with_probe_settings, prints)["task_teacher"] == keys["task_teacher"]
    probe = with_probe_settings.model_copy(update={"task_teacher": own.model_copy(update={"method": "frozen_body"})})
    same_probe = base.model_copy(update={"task_teacher": base.task_teacher.model_copy(update={"method": "frozen_body", "lr": 1e-3, "steps": 1600})})
    assert step_keys(probe, prints)["task_teacher"] == step_keys(same_probe, prints)["task_teacher"] != keys["task_teacher"]
    assert TASK_TEACHER.training_steps(probe) == 1600


def test_concurrent_threads_build_a_key_once(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts", poll_interval_s=0.02)
    log = tmp_path / "builds.log"
    with ThreadPoolExecutor(6) as pool:
        artifacts = list(pool.map(lambda _: store.get_or_build("phase1_student", INPUTS, slow_build(log)), range(6)))
    assert log.read_text().count("built") == 1
    assert sorted(artifact.cache_hit for artifact in artifacts) == [False] + [True] * 5
    assert len({artifact.path for artifact in artifacts}) == 1
    assert all(artifact.metrics == {"vocab_size": 42} for artifact in artifacts)
    manifest = json.loads((artifacts[0].path / MANIFEST).read_text())
    assert manifest["key"] == artifact_key(INPUTS) and manifest["inputs"] == INPUTS


def test_concurrent_processes_build_a_key_once(tmp_path):
    log = tmp_path / "builds.log"
    with multiprocessing.get_context("fork").Pool(4) as pool:
        results = pool.starmap(build_in_process, [(str(tmp_path / "artifacts"), str(log))] * 4)
    assert log.read_text().count("built") == 1
    assert sorted(hit for _, hit in results) == [False, True, True, True]
    assert len({path for path, _ in results}) == 1


def test_a_failed_build_publishes_nothing_and_the_next_request_builds(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")

    def broken(out_dir: Path) -> dict:
        (out_dir / "half-written").write_text("x")
        raise RuntimeError("worker died")

    with pytest.raises(RuntimeError):
        store.get_or_build("vocabulary", INPUTS, broken)
    key = artifact_key(INPUTS)
    assert store.find("vocabulary", key) is None
    assert not list((tmp_path / "artifacts" / "vocabulary").glob(f"{TMP_PREFIX}*"))
    artifact = store.get_or_build("vocabulary", INPUTS, slow_build(tmp_path / "log", seconds=0))
    assert not artifact.cache_hit and (artifact.path / "weights.bin").exists()


def test_leftovers_of_a_dead_builder_are_removed_by_the_next_builder(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    key = artifact_key(INPUTS)
    leftover = tmp_path / "artifacts" / "vocabulary" / f"{TMP_PREFIX}{key}-999-deadbeef"
    leftover.mkdir(parents=True)
    other_key = tmp_path / "artifacts" / "vocabulary" / f"{TMP_PREFIX}otherkey-1-cafe"
    other_key.mkdir()
    store.get_or_build("vocabulary", INPUTS, slow_build(tmp_path / "log", seconds=0))
    assert not leftover.exists()
    assert other_key.exists()  # another key's builder may still be alive


def test_a_waiting_request_sees_the_artifact_only_once_it_is_complete(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts", poll_interval_s=0.01)
    started = threading.Event()

    def build(out_dir: Path) -> dict:
        started.set()
        time.sleep(0.2)
        (out_dir / "weights.bin").write_bytes(b"complete")
        return {}

    builder = threading.Thread(target=store.get_or_build, args=("task_teacher", INPUTS, build))
    builder.start()
    started.wait()
    waiter = store.get_or_build("task_teacher", INPUTS, lambda out_dir: pytest.fail("built twice"))
    builder.join()
    assert waiter.cache_hit and (waiter.path / "weights.bin").read_bytes() == b"complete"


def test_a_reused_artifact_reports_what_its_build_cost_not_this_request(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    built = store.get_or_build("phase1_student", INPUTS, slow_build(tmp_path / "log", seconds=0.2))
    reused = store.get_or_build("phase1_student", INPUTS, lambda out_dir: pytest.fail("built twice"))
    assert built.build_seconds >= 0.2 and built.seconds >= built.build_seconds
    assert reused.cache_hit and reused.build_seconds == pytest.approx(built.build_seconds)
    assert reused.seconds < 0.2
