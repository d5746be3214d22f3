"""Extractive QA: SQuAD's scores, windows over long contexts and where their answers sit, the readers
(flat rows, SQuAD's nested json, a hub dataset per language) and the examples they refuse."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import yaml
from tiny_qa_task import QA_WORDS, questions
from tiny_task import tiny_teacher
from transformers import AutoTokenizer

from bistil_ray.config import TaskSpec
from bistil_ray.data.qa import qa_file
from bistil_ray.data.tasks import load_task
from bistil_ray.errors import UserInputError
from bistil_ray.method.batching import tokenize_questions
from bistil_ray.method.evaluation import normalized_answer, qa_scores


def test_squad_scores_forgive_case_punctuation_and_articles_and_split_cjk_into_characters():
    assert normalized_answer("The Eiffel-Tower!") == ["eiffel", "tower"]
    assert normalized_answer("北京大学") == ["北", "京", "大", "学"]
    scores = qa_scores(["the Paris", "in Berlin today", "北京"], [["Paris"], ["Berlin", "in Berlin"], ["北京大学"]])
    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx((1 + 0.8 + 2 / 3) / 3)


def test_each_window_marks_the_answer_it_holds_whole_and_the_others_point_at_cls(tmp_path: Path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher(tmp_path / "teacher", QA_WORDS))
    row = questions("en", 1)[0]  # the answer opens the context: the later windows miss it
    windows = tokenize_questions(tokenizer, [row["question"]], [row["context"]], [row["answers"]["answer_start"]], [row["answers"]["text"]], 24)
    assert len(windows) > 1
    marked = [w for w in windows if w["start_positions"] != 0]
    assert marked and all(w["start_positions"] == w["end_positions"] for w in marked)  # a one-word answer
    for window in marked:
        assert tokenizer.convert_ids_to_tokens(window["input_ids"][window["start_positions"]]) == row["answers"]["text"][0]
    assert any(w["start_positions"] == 0 for w in windows)


def write(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


GOOD = {"id": "q1", "question": "who?", "context": "anna lives here", "answers": {"text": ["anna"], "answer_start": [0]}}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"answers": {"text": ["anna"], "answer_start": [1]}}, "answer 'anna' is not at offset 1 of its context (found 'nna ')"),
        ({"answers": {"text": ["anna"], "answer_start": [40]}}, "answer 'anna' has offset 40, not within its context (15 characters)"),
        ({"answers": {"text": ["anna"], "answer_start": [True]}}, "answer 'anna' has offset True, not within its context (15 characters)"),
        ({"answers": {"text": ["anna"], "answer_start": ["0"]}}, "answer 'anna' has offset '0', not within its context (15 characters)"),
        ({"answers": {"text": [], "answer_start": []}}, "no answer (unanswerable questions are not supported)"),
        ({"answers": {"text": ["anna", "here"], "answer_start": [0]}}, "2 answer texts but 1 answer_start offsets"),
        ({"answers": ["anna"]}, "'answers' must be {\"text\": [...], \"answer_start\": [...]}"),
        ({"question": ""}, "'question' must be non-empty text"),
        ({"context": 7}, "'context' must be non-empty text"),
    ],
)
def test_a_bad_example_is_one_line_naming_the_file_and_the_example(tmp_path: Path, change: dict, message: str):
    path = write(tmp_path / "train.jsonl", [GOOD, {**GOOD, **change}])
    with pytest.raises(UserInputError) as refused:
        qa_file(path, "question", "context", "answers")
    assert str(refused.value) == f"{path}: example 2 (id q1): {message}"


def test_squads_nested_json_reads_as_its_rows(tmp_path: Path):
    nested = {"data": [{"title": "t", "paragraphs": [{"context": GOOD["context"], "qas": [
        {"id": "q1", "question": "who?", "answers": [{"text": "anna", "answer_start": 0}, {"text": "anna lives", "answer_start": 0}]}]}]}]}  # fmt: skip
    (tmp_path / "dev.json").write_text(json.dumps(nested))
    dataset = qa_file(tmp_path / "dev.json", "question", "context", "answers")
    assert dataset[0] == {"id": "q1", "question": "who?", "context": "anna lives here", "answer_texts": ["anna", "anna lives"], "answer_starts": [0, 0]}


def test_squad_for_english_and_xquad_for_the_targets_from_two_hub_datasets(tmp_path: Path):
    """SQuAD and XQuAD as on the hub (one dataset for English, another with a config per target),
    stored locally so that `load_dataset(<dir>, <config>)` reads them offline."""
    squad, xquad = tmp_path / "squad", tmp_path / "xquad"
    (squad / "plain_text").mkdir(parents=True)
    for split in ("train", "validation"):
        datasets.Dataset.from_list(questions("en", 8)).to_parquet(str(squad / "plain_text" / f"{split}.parquet"))
    (squad / "README.md").write_text("---\n" + yaml.safe_dump({"configs": [{"config_name": "plain_text", "data_files": [
        {"split": s, "path": f"plain_text/{s}.parquet"} for s in ("train", "validation")]}]}) + "---\n")  # fmt: skip
    (xquad / "xquad.de").mkdir(parents=True)
    datasets.Dataset.from_list(questions("de", 6)).to_parquet(str(xquad / "xquad.de" / "validation.parquet"))
    (xquad / "README.md").write_text("---\n" + yaml.safe_dump({"configs": [{"config_name": "xquad.de", "data_files": [
        {"split": "validation", "path": "xquad.de/validation.parquet"}]}]}) + "---\n")  # fmt: skip
    hub = {"kind": "qa", "path": str(xquad), "paths": {"en": str(squad)}, "configs": {"en": "plain_text", "de": "xquad.de"},
           "test_split": "validation"}  # fmt: skip
    task = load_task(TaskSpec(hub=hub), "en", ["de"])
    assert task.kind == "qa" and (len(task.source_train), len(task.target_test["de"])) == (8, 6)
    assert task.target_test["de"][0]["answer_texts"] == questions("de", 1)[0]["answers"]["text"]
