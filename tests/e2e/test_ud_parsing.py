"""UD dependency parsing end to end on a slice of the real treebanks (English-EWT, German-GSD): a tiny
teacher, `run` through every phase, LAS and UAS in the result, and the exported student's encoder
loading with plain transformers and the parser with its head predicting the same trees. Skipped where
the treebanks are absent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_ud_pos import ud_slice
from tiny_task import tiny_teacher
from transformers import AutoModel, AutoTokenizer

from bistil_ray.config import TaskSpec
from bistil_ray.data.tasks import load_task
from bistil_ray.data.ud import SHARED_UD_FOLDER
from bistil_ray.method.evaluation import gold_labels, predict
from bistil_ray.method.export import load_exported
from bistil_ray.method.parser import BiaffineParser, is_tree
from bistil_ray.run import main as run_main

pytestmark = pytest.mark.skipif(not SHARED_UD_FOLDER.is_dir(), reason=f"no UD treebanks at {SHARED_UD_FOLDER}")


def test_a_real_ud_slice_parses_end_to_end_and_the_student_reloads(tmp_path: Path):
    folder = ud_slice(tmp_path / "ud")
    task = load_task(TaskSpec(ud={"folder": folder, "kind": "parse"}), "en", ["de"])
    assert task.kind == "parse" and "nsubj" in task.label_names
    words = {word.lower() for split in (task.source_train, task.source_validation, task.target_validation["de"]) for sentence in split["tokens"] for word in sentence}
    teacher = tiny_teacher(tmp_path / "teacher", sorted(words))
    settings = {
        "teacher": str(teacher), "task": {"ud": {"folder": str(folder), "kind": "parse"}}, "source_lang": "en", "target_lang": "de",
        "output_dir": str(tmp_path / "out"),
        "task_teacher": {"steps": 30, "eval_every": 10, "batch_size": 8, "lr": 3e-3, "validation_examples": 16},
        "vocabulary": {"word_frequencies": False},
        "student": {"layers": 2},
        "phase1": {"steps": 4, "eval_every": 2, "batch_size": 8, "validation_sentences": 4},
        "phase2": {"full_steps": 6, "sparse_steps": 6, "eval_every": 3, "batch_size": 8, "lr": 3e-3, "validation_examples": 16,
                   "target_text_ratio": 0.5},
    }  # fmt: skip
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(settings))
    run_main([str(config)])

    result = json.loads((tmp_path / "out" / "en-de" / "result.json").read_text())
    assert result["metric"] == "las" and 0 <= result["target_score"] <= 1
    # Above attaching every word to the root: the teacher learnt something of the trees.
    heads = np.concatenate([tree[:, 0] for tree in gold_labels(task.source_validation)])
    assert result["teacher_source_score"] > 0 and np.mean(heads == 0) < 0.1
    student_dir = tmp_path / "out" / "en-de" / "student"
    encoder = AutoModel.from_pretrained(student_dir)  # the encoder alone, with plain transformers
    assert encoder.config.num_hidden_layers == 2
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    parser = BiaffineParser.from_pretrained(student_dir).eval()
    ours, _ = load_exported(student_dir)
    test = task.target_test["de"]
    trees = predict(parser, tokenizer, test, ["tokens"])
    assert [t.tolist() for t in trees] == [t.tolist() for t in predict(ours, tokenizer, test, ["tokens"])]
    assert all(is_tree(tree[:, 0].tolist()) for tree in predict(parser, tokenizer, test, ["tokens"], trees=True))
    first = test[0]["tokens"]
    heads, relations = parser.parse(tokenizer, first)
    assert heads == trees[0][:, 0].tolist() and relations == [task.label_names[i] for i in trees[0][:, 1]]
    assert "BiaffineParser.from_pretrained" in (student_dir / "README.md").read_text()
