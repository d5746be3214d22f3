"""Dependency parsing: the biaffine parser's masks, loss and saved form, the words it reads, LAS and
UAS, its distillation terms, and a dataset of the hub's UD schema read offline."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import yaml
from tiny_task import tiny_teacher
from transformers import AutoModel, AutoTokenizer

from bistil_ray.config import TaskSpec
from bistil_ray.data.tasks import load_task
from bistil_ray.data.token_files import UD_RELATIONS
from bistil_ray.errors import UserInputError
from bistil_ray.method.batching import IGNORE_INDEX, collate, tokenize_parsed
from bistil_ray.method.evaluation import parse_scores, task_scores
from bistil_ray.method.losses import LossWeights, distillation_loss
from bistil_ray.method.parser import BiaffineParser, candidate_mask

WORDS = ["anna", "lives", "in", "paris", "and", "peter", "visits", "berlin"]


@pytest.fixture
def parser_and_tokenizer(tmp_path: Path):
    folder = tiny_teacher(tmp_path / "teacher", WORDS)
    torch.manual_seed(0)
    parser = BiaffineParser.from_pretrained(folder, id2label=dict(enumerate(UD_RELATIONS)))
    return parser, AutoTokenizer.from_pretrained(folder)


def test_a_word_may_take_the_root_or_another_real_word_as_its_head():
    mask = candidate_mask(torch.tensor([[1, 2, 0]]))  # two words, one padded
    assert mask[0].tolist() == [[True, False, True, False], [True, True, False, False], [False, False, False, False]]


def test_words_cut_off_by_the_length_limit_are_left_out_and_so_are_heads_pointing_at_them(parser_and_tokenizer):
    _, tokenizer = parser_and_tokenizer
    (example,) = tokenize_parsed(tokenizer, [["anna", "lives", "in", "paris"]], [[2, 0, 4, 2]], [[1, 2, 3, 4]], max_length=4)
    assert len(example["word_starts"]) == 2  # [CLS] anna lives [SEP]
    assert example["heads"] == [2, 0] and example["labels"] == [1, 2]
    (example,) = tokenize_parsed(tokenizer, [["anna", "lives", "in", "paris"]], [[3, 0, 2, 2]], [[1, 2, 3, 4]], max_length=4)
    assert example["heads"] == [IGNORE_INDEX, 0] and example["labels"] == [IGNORE_INDEX, 2]


def test_the_parser_learns_a_tree_and_reloads_from_a_plain_encoder_directory(parser_and_tokenizer, tmp_path: Path):
    parser, tokenizer = parser_and_tokenizer
    words, heads, relations = ["anna", "lives", "in", "paris"], [2, 0, 4, 2], [UD_RELATIONS.index(r) for r in ("nsubj", "root", "case", "obl")]
    batch = collate(tokenize_parsed(tokenizer, [words], [heads], [relations], 32), tokenizer.pad_token_id)
    optimizer = torch.optim.Adam(parser.parameters(), lr=1e-3)
    parser.train()
    for _ in range(100):
        loss = parser(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    parser.eval()
    assert parser.parse(tokenizer, words) == (heads, ["nsubj", "root", "case", "obl"])

    parser.save_pretrained(tmp_path / "saved")
    assert AutoModel.from_pretrained(tmp_path / "saved").config.num_hidden_layers == 4  # the encoder alone
    again = BiaffineParser.from_pretrained(tmp_path / "saved").eval()
    assert again.parse(tokenizer, words) == parser.parse(tokenizer, words)


def test_las_needs_the_head_and_the_relation_and_uas_the_head_alone():
    gold = [np.array([[2, 1], [0, 2]]), np.array([[0, 2]])]
    predicted = [np.array([[2, 3], [0, 2]]), np.array([[1, 2]])]
    assert parse_scores(predicted, gold) == {"uas": 2 / 3, "las": 1 / 3}
    assert task_scores(predicted, gold, list(UD_RELATIONS))["metric"] == "las"
    with pytest.raises(UserInputError):
        parse_scores([], [])


def test_a_parsers_soft_cross_entropy_adds_its_heads_to_its_relations_over_real_words_only():
    torch.manual_seed(0)
    arcs, relations = torch.randn(1, 3, 4), torch.randn(1, 3, 5)
    words = torch.tensor([[True, True, False]])
    arcs[0, 2] = 1e6  # a padded word: whatever it holds must not count
    weights = LossWeights(hidden=0, attn=0, ce=1.0, temperature=1.0)
    loss, _ = distillation_loss(weights, attention_mask=torch.ones(1, 5), student_logits=relations, teacher_logits=relations,
                                student_arc_logits=arcs, teacher_arc_logits=arcs, word_mask=words)  # fmt: skip

    def entropy(logits):
        probabilities = logits.softmax(-1)
        return -(probabilities * probabilities.log()).sum(-1).mean()

    assert loss.item() == pytest.approx((entropy(arcs[words]) + entropy(relations[words])).item(), rel=1e-5)


def ud_shaped_dataset(root: Path, target_rows: list[dict]) -> dict:
    """A dataset of universal_dependencies' columns (`tokens`, `head` as strings, `deprel` with
    subtypes), a config per treebank, that `load_dataset(<dir>, <config>)` loads offline as from the hub."""
    source_rows = [{"tokens": ["Anna", "lives", "here"], "head": ["2", "0", "2"], "deprel": ["nsubj", "root", "advmod"]}] * 4
    entries = []
    for code, rows in (("en_ewt", source_rows), ("de_gsd", target_rows)):
        (root / code).mkdir(parents=True)
        for split in ("train", "validation", "test"):
            datasets.Dataset.from_list(rows).to_parquet(str(root / code / f"{split}.parquet"))
        entries.append({"config_name": code, "data_files": [{"split": s, "path": f"{code}/{s}.parquet"} for s in ("train", "validation", "test")]})
    (root / "README.md").write_text("---\n" + yaml.safe_dump({"configs": entries}) + "---\n")
    return {"kind": "parse", "path": str(root), "configs": {"en": "en_ewt", "de": "de_gsd"}}


def test_a_dataset_of_the_hubs_ud_schema_is_a_parse_task(tmp_path: Path):
    german = [{"tokens": ["Anna", "lebt", "hier"], "head": ["2", "0", "2"], "deprel": ["nsubj", "root", "advmod:emph"]}] * 4
    task = load_task(TaskSpec(hub=ud_shaped_dataset(tmp_path / "ud", german)), "en", ["de"])
    assert task.kind == "parse" and task.target_test["de"][0]["heads"] == [2, 0, 2]
    assert [task.label_names[r] for r in task.target_test["de"][0]["tags"]] == ["nsubj", "root", "advmod"]
    broken = ud_shaped_dataset(tmp_path / "broken", [{"tokens": ["a", "b"], "head": ["0", "5"], "deprel": ["root", "dep"]}])
    with pytest.raises(UserInputError, match=r"de_gsd\] test: sentence 1: word 2's head '5'"):
        load_task(TaskSpec(hub=broken), "en", ["de"])


def test_tree_decoding_breaks_a_cycle_with_the_best_tree_and_keeps_a_tree_it_is_given():
    from bistil_ray.method.parser import is_tree, tree_heads

    scores = torch.full((3, 4), -5.0)  # words 1-3; candidates: the root, words 1-3
    scores[0, 2], scores[1, 1], scores[2, 0] = 5.0, 5.0, 5.0  # 1 <- 2, 2 <- 1: a cycle; 3 <- root
    scores[0, 3], scores[1, 3] = 4.0, 1.0  # the cheapest way out: 1 <- 3
    assert not is_tree(scores.argmax(-1).tolist())
    heads = tree_heads(scores)
    assert is_tree(heads) and heads == [3, 1, 0]
    scores[0, 2], scores[0, 3] = -5.0, 5.0
    assert tree_heads(scores) == scores.argmax(-1).tolist() == [3, 1, 0]
