"""ONNX export of a student: the float32 graph answers like the PyTorch student (sequence and token
classification), the int8 graph runs and is smaller, and the CLI refuses bad input with one line and
exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_students import LABELS, SENTENCES, bert_student, bert_token_student, xlmr_student

from bistil_ray.method.evaluation import measure_efficiency
from bistil_ray.method.export import write_student_directory
from bistil_ray.method.onnx_export import OnnxClassifier, export_onnx


@pytest.mark.parametrize("build", [bert_student, xlmr_student, bert_token_student], ids=["bert", "xlmr", "bert_tokens"])
def test_the_onnx_graphs_answer_like_the_student(tmp_path: Path, build):
    model, tokenizer = build()
    student_dir = tmp_path / "student"
    write_student_directory(model, tokenizer, student_dir, label_names=LABELS, extra_metadata={"teacher": "tiny"})
    graphs = export_onnx(student_dir, int8=True)

    assert set(graphs) == {"float32", "int8"} and graphs["int8"].stat().st_size < graphs["float32"].stat().st_size
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = model(**batch).logits
    float32 = OnnxClassifier(graphs["float32"])(**batch).logits
    np.testing.assert_allclose(float32.numpy(), expected.numpy(), atol=1e-4)
    single = tokenizer(SENTENCES[:1], return_tensors="pt")  # another batch size and length: dynamic axes
    with torch.inference_mode():
        expected_single = model(**single).logits
    np.testing.assert_allclose(OnnxClassifier(graphs["float32"])(**single).logits.numpy(), expected_single.numpy(), atol=1e-4)
    int8 = OnnxClassifier(graphs["int8"])(**batch).logits
    assert int8.shape == expected.shape and torch.isfinite(int8).all()
    # The deployment measurement times a graph like any model.
    measured = measure_efficiency({"onnx": (OnnxClassifier(graphs["int8"]), tokenizer)}, SENTENCES, repeats=1, warmup=1)
    assert measured["onnx"].throughput_batch32 > 0

    again = export_onnx(student_dir, int8=False)  # a second export replaces the first, whole
    assert sorted(path.name for path in (student_dir / "onnx").iterdir()) == [again["float32"].name]


def run_export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bistil_ray.export", *args], capture_output=True, text=True, timeout=120)


def test_the_export_cli_refuses_bad_input_with_one_line(tmp_path: Path):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text("{not json")
    cases = {
        (str(tmp_path / "absent"), "--onnx"): "absent: no such directory",
        (str(tmp_path),): "nothing to export",
        (str(tmp_path), "--onnx"): "not an exported model directory",
        (str(damaged), "--onnx", "--int8"): "cannot load the model",
    }
    for args, expected in cases.items():
        result = run_export(*args)
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (damaged / "onnx").exists()


def test_a_sweep_with_export_onnx_exports_each_pairs_best_student(tmp_path: Path):
    from sweep_fakes import CONSTANTS

    from bistil_ray.orchestration.driver import export_best_students
    from bistil_ray.orchestration.paths import SweepPaths
    from bistil_ray.orchestration.results import write_table
    from bistil_ray.results_schema import SUMMARY_SCHEMA, trial_row

    paths = SweepPaths(tmp_path, "s")
    rows = []
    for trial, best in (("best", True), ("other", False)):
        model, tokenizer = bert_student()
        write_student_directory(model, tokenizer, paths.students / trial, label_names=LABELS)
        result = {"objective_score": 0.5, "completed": True, "student_path": str(paths.students / trial)}
        rows.append({**trial_row(CONSTANTS, trial, {"target_lang": "de"}, result, None), "is_best": best, "is_pareto": best})
    write_table(paths.summary_table, rows, SUMMARY_SCHEMA)
    export_best_students(paths, int8=False)
    assert [path.name for path in (paths.students / "best" / "onnx").iterdir()] == ["model.onnx"]
    assert not (paths.students / "other" / "onnx").exists()
