"""Token tasks end to end: first-sub-word alignment on the offline teacher's sentencepiece tokenizer,
and a tiny NER pair (CoNLL) and POS pair (CoNLL-U) trained through `run` to a student that plain
transformers loads and that predicts the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from datasets import Dataset
from tiny_task import tiny_teacher
from tiny_token_task import ENTITIES, FILLER, check_first_subword_alignment, tagged, token_task_files
from transformers import AutoModelForTokenClassification, AutoTokenizer

from bistil_ray.method.batching import IGNORE_INDEX, tokenize_tagged
from bistil_ray.method.evaluation import predict
from bistil_ray.method.export import load_exported
from bistil_ray.run import main as run_main

def test_labels_sit_on_the_first_subword_of_each_word_sentencepiece(e5_teacher_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(e5_teacher_dir)
    words = ["Konstantinopel", "ist", "eine", "Stadtverwaltungsreform", "."]
    assert len(tokenizer([words], is_split_into_words=True)["input_ids"][0]) > len(words) + 2
    check_first_subword_alignment(tokenizer, words, [3, 0, 0, 1, 0])


def test_a_cjk_word_is_tagged_on_its_text_not_on_the_bare_word_start_piece(e5_teacher_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(e5_teacher_dir)
    words = ["施力", "的", "大小", "。"]  # each piece is "▁" then the word: no Chinese piece starts with "▁"
    pieces = tokenizer([words], is_split_into_words=True).tokens(0)
    assert pieces.count("\u2581") >= 3
    check_first_subword_alignment(tokenizer, words, [1, 2, 3, 4])
    (example,) = tokenize_tagged(tokenizer, [words], [[1, 2, 3, 4]], max_length=64)
    assert all(pieces[position] != "\u2581" for position, label in enumerate(example["labels"]) if label != IGNORE_INDEX)


@pytest.mark.parametrize("scheme, metric", [("ner", "entity_f1"), ("pos", "token_accuracy")])
def test_a_token_pair_trains_exports_and_reloads_with_plain_transformers(tmp_path: Path, scheme: str, metric: str):
    teacher = tiny_teacher(tmp_path / "teacher", [*ENTITIES, *FILLER["en"], *FILLER["de"]])
    settings = {
        **token_task_files(tmp_path / "files", scheme), "teacher": str(teacher), "source_lang": "en", "target_lang": "de",
        "output_dir": str(tmp_path / "out"),
        "task_teacher": {"steps": 30, "eval_every": 10, "batch_size": 8, "lr": 3e-3},
        "vocabulary": {"word_frequencies": False},
        "student": {"layers": 2},
        "phase1": {"steps": 4, "eval_every": 2, "batch_size": 8, "validation_sentences": 8},
        "phase2": {"full_steps": 10, "sparse_steps": 10, "eval_every": 5, "batch_size": 8, "lr": 3e-3, "target_text_ratio": 0.25},
    }  # fmt: skip
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(settings))
    run_main([str(config)])

    result = json.loads((tmp_path / "out" / "en-de" / "result.json").read_text())
    assert result["metric"] == metric and 0 <= result["target_score"] <= 1
    assert result["teacher_source_score"] > 0.5  # the teacher learnt the task
    assert result["target_macro_f1"] is None
    student_dir = tmp_path / "out" / "en-de" / "student"
    assert json.loads((student_dir / "config.json").read_text())["architectures"] == ["BertForTokenClassification"]
    assert "AutoModelForTokenClassification" in (student_dir / "README.md").read_text()

    plain = AutoModelForTokenClassification.from_pretrained(student_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    ours, _ = load_exported(student_dir)
    test = Dataset.from_dict({"tokens": [words for words, _ in tagged("de", 12, scheme)]})
    assert [p.tolist() for p in predict(plain, tokenizer, test, ["tokens"])] == [p.tolist() for p in predict(ours, tokenizer, test, ["tokens"])]
    encoded = tokenizer([["anna", "wohnt", "in", "berlin"]], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(plain(**encoded).logits, ours(**encoded).logits)
