"""The single-run entry point end to end: a tiny run on the offline teacher produces a loadable
student with its model card, and a rerun reuses what it built."""

import json
from pathlib import Path

from huggingface_hub import ModelCard
from run_cli import E5_TINY_RUN, run_cli, write_config



def test_tiny_run_end_to_end_and_rerun_reuses_steps(tmp_path: Path):
    out = tmp_path / "out"
    config = write_config(tmp_path / "run.yaml", {**E5_TINY_RUN, "output_dir": str(out)})
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
    assert json.loads((exported / "bistil_artifact.json").read_text())["key"] == json.loads(
        (out / "en-zh" / "result.json").read_text()
    )["phase2_key"]
