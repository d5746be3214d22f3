"""The text curve end to end on a tiny token task: BiStil and no phase 1 at each amount of target
text, the larger amount read from Debian's text (a stand-in file here), phase 1's value judged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tiny_task import TINY_SETTINGS, tiny_teacher
from tiny_token_task import ENTITIES, FILLER, tagged, token_task_files

from bench import text_curve
from bistil_ray.data import corpora


def test_the_text_curve_builds_both_students_at_each_size_and_judges_phase_1(tmp_path: Path, monkeypatch):
    teacher = tiny_teacher(tmp_path / "teacher", [*ENTITIES, *FILLER["en"], *FILLER["de"]])
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**TINY_SETTINGS, "target_lang": "de", **token_task_files(tmp_path / "files", "pos"), "teacher": str(teacher)}))
    debian = tmp_path / "de-debian.txt"
    debian.write_text("\n".join(" ".join(words) for words, _ in tagged("de", 300, "pos")))
    asked = []
    monkeypatch.setattr(corpora, "debian_corpus", lambda language: asked.append(language) or debian)
    out = tmp_path / "results"
    text_curve.main([str(config), "--lang", "de", "--sizes", "0", "200", "--work-dir", str(tmp_path / "work"), "--out", str(out)])
    record = json.loads((out / "text-curve-train-de.json").read_text())
    assert [point["target_sentences"] for point in record["points"]] == [0, 200]
    assert [point["phase1_sentences"] for point in record["points"]] == [80, 200]  # the task's own text, then Debian's
    assert set(asked) == {"de"}
    for point in record["points"]:
        value = point["value"]
        assert value["low"] <= value["difference"] <= value["high"]
        assert value["difference"] == pytest.approx(point["bistil"]["target_score"] - point["no_phase1"]["target_score"])
    assert "phase 1's value" in (out / "text-curve-train-de.md").read_text()
    with pytest.raises(SystemExit) as exited:
        text_curve.main([str(config), "--lang", "de", "--sizes", "0", "0"])
    assert exited.value.code == 2
