"""The single-run entry point: bad input exits 2 with one line; a tiny end-to-end run on the
offline teacher produces a loadable student and reuses what it built."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from bistil_ray.run import main

TINY_SETTINGS = {
    "teacher": "builtin:multilingual-e5-small",
    "task": {"builtin": "chatterbot"},
    "source_lang": "en",
    "target_lang": "zh",
    "task_teacher": {"steps": 3, "eval_every": 3, "batch_size": 8},
    "vocabulary": {"threshold": 1e-4},
    "student": {"layers": 2},
    "phase1": {"steps": 4, "eval_every": 2, "batch_size": 8, "validation_sentences": 16},
    "phase2": {"full_steps": 2, "sparse_steps": 2, "eval_every": 2, "batch_size": 8, "density": 0.1},
}


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bistil_ray.run", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def write_config(path: Path, settings: dict) -> Path:
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"phase2": {"density": 1.5}}, "phase2.density: Input should be less than or equal to 1"),
        ({"phase1": {"stepz": 3}}, "phase1.stepz: unknown key; did you mean 'steps'?"),
        ({"target_lang": "en"}, "target_lang equals source_lang"),
        ({"teacher": "/nonexistent/teacher"}, "teacher '/nonexistent/teacher'"),
        ({"target_lang": "xx"}, "no language 'xx'"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, change: dict, expected: str, capsys):
    settings = {**TINY_SETTINGS, **change, "output_dir": str(tmp_path / "out")}
    if "phase1" in change or "phase2" in change:
        key = next(iter(change))
        settings[key] = {**TINY_SETTINGS[key], **change[key]}
    with pytest.raises(SystemExit) as exit_status:
        main([str(write_config(tmp_path / "run.yaml", settings))])
    assert exit_status.value.code == 2
    stderr = capsys.readouterr().err
    assert expected in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_missing_config_file_exits_2(tmp_path: Path):
    result = run_cli(str(tmp_path / "absent.yaml"))
    assert result.returncode == 2 and "absent.yaml: no such file" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.e2e
def test_tiny_run_end_to_end_and_rerun_reuses_steps(tmp_path: Path):
    out = tmp_path / "out"
    config = write_config(tmp_path / "run.yaml", {**TINY_SETTINGS, "output_dir": str(out)})
    first = run_cli(str(config))
    assert first.returncode == 0, first.stderr[-3000:]
    result = json.loads((out / "en-zh" / "result.json").read_text())
    assert result["student_layers"] == 2
    assert result["vocab_size"] < 20_000 and result["student_params"] < 0.2 * result["teacher_params"]
    assert 0 <= result["target_score"] <= 1 and result["speedup"] > 1
    exported = out / "en-zh" / "student"
    assert (exported / "model.safetensors").exists() and not list(exported.glob("*.bin"))
    assert json.loads((exported / "config.json").read_text())["id2label"]["0"]
    card = ModelCard.load(exported / "README.md")
    assert card.data.license == "mit" and card.data.base_model == "intfloat/multilingual-e5-small"
    assert card.data.eval_results[0].metric_value == result["target_score"]

    second = run_cli(str(config))
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("reusing") == 5  # the four shared steps and the student

    changed = run_cli(str(config), "--set", "phase2.density=0.2")
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert changed.stdout.count("reusing") == 4 and "phase2_student: built" in changed.stdout
    assert json.loads((exported / "bistil_step.json").read_text())["key"] == json.loads(
        (out / "en-zh" / "result.json").read_text()
    )["phase2_key"]
