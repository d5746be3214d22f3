"""An extractive QA pair on tiny local files: contexts cut into overlapping windows, the teacher and the
student trained and scored by F1, the student exported as a plain `AutoModelForQuestionAnswering` that
reloads to the same answers."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from datasets import Dataset
from tiny_qa_task import QA_WORDS, qa_task_files, questions
from tiny_task import tiny_teacher
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from bistil_ray.method.evaluation import predict
from bistil_ray.method.export import load_exported
from bistil_ray.run import main as run_main


def test_a_qa_pair_trains_exports_and_reloads_with_plain_transformers(tmp_path: Path):
    teacher = tiny_teacher(tmp_path / "teacher", QA_WORDS)
    settings = {
        **qa_task_files(tmp_path / "files"), "teacher": str(teacher), "source_lang": "en", "target_lang": "de",
        "output_dir": str(tmp_path / "out"),
        # 24 tokens: the 22-word contexts come in two windows or more.
        "task_teacher": {"steps": 40, "eval_every": 20, "batch_size": 8, "lr": 3e-3, "max_length": 24},
        "vocabulary": {"word_frequencies": False},
        "student": {"layers": 2},
        "phase1": {"steps": 4, "eval_every": 2, "batch_size": 8, "validation_sentences": 8},
        "phase2": {"full_steps": 10, "sparse_steps": 10, "eval_every": 5, "batch_size": 8, "lr": 3e-3, "max_length": 24,
                   "target_text_ratio": 0.0},
    }  # fmt: skip
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(settings))
    run_main([str(config)])

    result = json.loads((tmp_path / "out" / "en-de" / "result.json").read_text())
    assert result["metric"] == "f1" and 0 <= result["target_score"] <= 1
    assert result["teacher_source_score"] > 0.25  # above a name drawn at random from the four
    student_dir = tmp_path / "out" / "en-de" / "student"
    assert json.loads((student_dir / "config.json").read_text())["architectures"] == ["BertForQuestionAnswering"]
    assert "AutoModelForQuestionAnswering" in (student_dir / "README.md").read_text()
    plain = AutoModelForQuestionAnswering.from_pretrained(student_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    ours, _ = load_exported(student_dir)
    rows = questions("de", 12)
    test = Dataset.from_dict({"question": [r["question"] for r in rows], "context": [r["context"] for r in rows],
                              "answer_texts": [r["answers"]["text"] for r in rows], "answer_starts": [r["answers"]["answer_start"] for r in rows]})  # fmt: skip
    answers = predict(plain, tokenizer, test, ["question", "context"], max_length=24)
    assert answers == predict(ours, tokenizer, test, ["question", "context"], max_length=24)
    assert all(answer == "" or answer in row["context"] for answer, row in zip(answers, rows))
