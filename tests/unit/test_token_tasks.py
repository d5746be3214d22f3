"""Token tasks (NER, POS): the file readers, a WikiANN-shaped hub dataset, first-sub-word label
alignment on WordPiece, and the metrics (entity F1 for BIO tags, token accuracy otherwise)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import yaml
from datasets import Dataset
from tiny_task import tiny_teacher
from tiny_token_task import check_first_subword_alignment, write
from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

from bistil_ray.config import Phase2Config, TaskSpec, resolve_phase2
from bistil_ray.data.tasks import load_task
from bistil_ray.data.token_files import tagged_sentences
from bistil_ray.errors import UserInputError
from bistil_ray.method.batching import IGNORE_INDEX, collate, tokenize_tagged
from bistil_ray.method.evaluation import evaluate_task, predict, task_scores

CONLLU = """# sent_id = 1
# text = Anna lives in Paris.
1\tAnna\tAnna\tPROPN\t_\t_\t2\tnsubj\t_\t_
2\tlives\tlive\tVERB\t_\t_\t0\troot\t_\t_
3-4\tinto\t_\t_\t_\t_\t_\t_\t_\t_
3\tin\tin\tADP\t_\t_\t5\tcase\t_\t_
4\tto\tto\tADP\t_\t_\t5\tcase\t_\t_
5\tParis\tParis\tPROPN\t_\t_\t2\tobl\t_\t_
5.1\tgone\t_\t_\t_\t_\t_\t_\t_\t_

1\tHello\thello\tINTJ\t_\t_\t0\troot\t_\t_
"""


def test_conllu_reads_forms_and_upos_without_ranges_or_empty_nodes(tmp_path: Path):
    path = write(tmp_path / "train.conllu", CONLLU)
    assert tagged_sentences(path, "tokens", "tags") == [
        (["Anna", "lives", "in", "to", "Paris"], ["PROPN", "VERB", "ADP", "ADP", "PROPN"]),
        (["Hello"], ["INTJ"]),
    ]
    assert tagged_sentences(path, "tokens", "deprel")[1] == (["Hello"], ["root"])


def test_conll_and_jsonl_read_words_and_tags(tmp_path: Path):
    conll = write(tmp_path / "train.conll", "-DOCSTART-\t-X-\tO\n\nEU\tNNP\tB-ORG\nrejects\tVBZ\tO\n\nPeter\tNNP\tB-PER\n")
    assert tagged_sentences(conll, "tokens", "tags") == [(["EU", "rejects"], ["B-ORG", "O"]), (["Peter"], ["B-PER"])]
    jsonl = write(tmp_path / "test.jsonl", json.dumps({"tokens": ["Berlin", "ruft"], "tags": ["B-LOC", "O"]}) + "\n")
    assert tagged_sentences(jsonl, "tokens", "tags") == [(["Berlin", "ruft"], ["B-LOC", "O"])]


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("a.jsonl", json.dumps({"tokens": ["a", "b"], "tags": ["O"]}) + "\n", "row 1: 2 words but 1 tags"),
        ("a.jsonl", json.dumps({"tokens": "a b", "tags": ["O", "O"]}) + "\n", "column 'tokens' must hold a non-empty list"),
        ("a.jsonl", json.dumps({"words": ["a"], "tags": ["O"]}) + "\n", "no column 'tokens'"),
        ("a.jsonl", json.dumps({"tokens": ["a"], "tags": [[1]]}) + "\n", "not a class name or id"),
        ("a.conll", "EU B-ORG\n", "not CoNLL"),
        ("a.conll", "EU\n", "a word and its tag per line"),
        ("a.conllu", "1\tAnna\n", "without a UPOS tag"),
        ("a.conllu", "# only a comment\n", "sentence 1 has no words"),
        ("a.conll", "\n\n", "no sentences"),
        ("a.txt", "EU\tO\n", "unknown extension"),
        ("a.conll", "\xff", "not UTF-8"),
    ],
)
def test_bad_token_files_are_one_line_errors_naming_the_file(tmp_path: Path, name: str, text: str, expected: str):
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1") if "\xff" in text else text.encode("utf-8"))
    with pytest.raises(UserInputError, match=expected) as raised:
        tagged_sentences(path, "tokens", "tags")
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_a_tag_missing_from_the_source_train_split_is_refused(tmp_path: Path):
    train = write(tmp_path / "train.conll", "Anna\tB-PER\nlives\tO\n")
    test = write(tmp_path / "test.conll", "Berlin\tB-LOC\n")
    spec = TaskSpec(files={"kind": "token", "train": train, "validation": train, "test": {"de": test}})
    with pytest.raises(UserInputError, match="test.conll: tags not in the source train split: B-LOC"):
        load_task(spec, "en", ["de"])


WIKIANN_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


@pytest.fixture
def wikiann_dir(tmp_path: Path) -> Path:
    """A WikiANN-shaped dataset (a config per language; `tokens`, `ner_tags` as a Sequence of
    ClassLabel, `langs`, `spans`) that `load_dataset(<dir>, <lang>)` loads offline as from the hub."""
    root = tmp_path / "wikiann"
    features = datasets.Features({
        "tokens": datasets.Sequence(datasets.Value("string")),
        "ner_tags": datasets.Sequence(datasets.ClassLabel(names=WIKIANN_TAGS)),
        "langs": datasets.Sequence(datasets.Value("string")),
        "spans": datasets.Sequence(datasets.Value("string")),
    })  # fmt: skip
    configs = {}
    for lang in ("en", "de"):
        (root / lang).mkdir(parents=True)
        rows = [{"tokens": [f"{lang}{i}", "Anna", "Schmidt"], "ner_tags": [0, 1, 2], "langs": [lang] * 3, "spans": ["PER: Anna Schmidt"]}
                for i in range(6)]  # fmt: skip
        for split in ("train", "validation", "test"):
            datasets.Dataset.from_list(rows, features=features).to_parquet(str(root / lang / f"{split}.parquet"))
        configs[lang] = {split: f"{lang}/{split}.parquet" for split in ("train", "validation", "test")}
    entries = [{"config_name": name, "data_files": [{"split": k, "path": v} for k, v in files.items()]} for name, files in configs.items()]
    (root / "README.md").write_text("---\n" + yaml.safe_dump({"configs": entries}) + "---\n")
    return root


def test_hub_token_task_from_a_wikiann_shaped_dataset(wikiann_dir: Path):
    hub = {"kind": "token", "path": str(wikiann_dir), "config": "{lang}", "label_field": "ner_tags", "target_validation_split": "validation"}
    task = load_task(TaskSpec(hub=hub), "en", ["de"])
    assert task.kind == "token" and task.label_names == WIKIANN_TAGS  # the ClassLabel's order, not sorted
    assert task.source_train.column_names == ["tokens", "tags"]
    assert task.target_test["de"][0] == {"tokens": ["de0", "Anna", "Schmidt"], "tags": [0, 1, 2]}
    assert set(task.target_validation) == {"de"}
    with pytest.raises(UserInputError, match="no column 'tags'"):
        load_task(TaskSpec(hub={**hub, "label_field": "tags"}), "en", ["de"])


def test_labels_sit_on_the_first_subword_of_each_word_wordpiece(tmp_path: Path):
    teacher = tiny_teacher(tmp_path / "teacher", ["anna", "lives", "in", "par", "##is", "##ian"])
    tokenizer = AutoTokenizer.from_pretrained(teacher)
    words = ["Anna", "lives", "in", "Parisian", "Paris"]
    assert len(tokenizer([words], is_split_into_words=True)["input_ids"][0]) > len(words) + 2  # some words split
    check_first_subword_alignment(tokenizer, words, [1, 0, 0, 2, 2])


def test_truncated_words_have_no_label_and_padding_is_ignored(tmp_path: Path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher(tmp_path / "teacher", ["a", "b"]))
    short, long = tokenize_tagged(tokenizer, [["a"], ["a", "b", "a", "b", "a"]], [[1], [1, 0, 1, 0, 1]], max_length=4)
    assert long["labels"] == [IGNORE_INDEX, 1, 0, IGNORE_INDEX]  # [CLS] a b [SEP]: the rest cut off
    batch = collate([short, long], tokenizer.pad_token_id)
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 1, IGNORE_INDEX, IGNORE_INDEX], long["labels"]]


def test_bio_tags_are_scored_by_entity_f1_and_other_tags_by_token_accuracy():
    names = ["B-LOC", "B-PER", "I-PER", "O"]
    gold = [np.array([1, 2, 3, 0]), np.array([3, 0])]
    guess = [np.array([1, 3, 3, 0]), np.array([3, 0])]  # "Anna Schmidt" cut short: 2 of 3 entities right
    scores = task_scores(guess, gold, names)
    assert scores["metric"] == "entity_f1" and scores["score"] == pytest.approx(2 / 3)  # P 2/3, R 2/3
    assert scores["token_accuracy"] == pytest.approx(5 / 6)
    pos = task_scores(guess, gold, ["ADJ", "NOUN", "PROPN", "VERB"])
    assert pos["metric"] == "token_accuracy" and pos["score"] == pytest.approx(5 / 6)


def test_predict_answers_one_tag_per_word_read_at_its_first_subword(tmp_path: Path):
    teacher = tiny_teacher(tmp_path / "teacher", ["anna", "par", "##is"])
    tokenizer = AutoTokenizer.from_pretrained(teacher)
    torch.manual_seed(0)
    model = BertForTokenClassification(BertConfig.from_pretrained(teacher, num_labels=3)).eval()
    words = [["anna", "paris"], ["paris"]]
    predicted = predict(model, tokenizer, Dataset.from_dict({"tokens": words}), ["tokens"])
    encoded = tokenizer(words[0], is_split_into_words=True, return_tensors="pt")
    logits = model(**encoded).logits[0]
    assert predicted[0].tolist() == [int(logits[1].argmax()), int(logits[2].argmax())]  # [CLS] anna par ##is [SEP]
    assert [len(sentence) for sentence in predicted] == [2, 1]
    scores = evaluate_task(model, tokenizer, Dataset.from_dict({"tokens": words, "tags": [[0, 1], [2]]}), ["tokens"], ["A", "B", "C"])
    assert scores["metric"] == "token_accuracy" and 0 <= scores["score"] <= 1


def test_layer_norms_are_frozen_by_default_for_token_tasks_only():
    default = Phase2Config()
    assert resolve_phase2(default, "token").freeze_layer_norm is True
    assert resolve_phase2(default, "sequence").freeze_layer_norm is False
    chosen = Phase2Config(freeze_layer_norm=False)
    assert resolve_phase2(chosen, "token").freeze_layer_norm is False
