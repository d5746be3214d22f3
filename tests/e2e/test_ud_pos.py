"""UD POS end to end on a slice of the real treebanks in ../shared/data/ud (English-EWT, German-GSD):
a few dozen sentences of each split, a tiny teacher whose vocabulary is their words, `run` through
every phase, the student reloaded with plain transformers. Skipped where the treebanks are absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tiny_task import tiny_teacher
from transformers import AutoModelForTokenClassification, AutoTokenizer

from bistil_ray.config import TaskSpec
from bistil_ray.data.tasks import load_task
from bistil_ray.data.ud import SHARED_UD_FOLDER, treebank_file
from bistil_ray.method.evaluation import predict
from bistil_ray.method.export import load_exported
from bistil_ray.run import main as run_main

pytestmark = pytest.mark.skipif(not SHARED_UD_FOLDER.is_dir(), reason=f"no UD treebanks at {SHARED_UD_FOLDER}")
SLICE = {"dev": 40, "test": 24}


def ud_slice(folder: Path) -> Path:
    """The first sentences of each split of English-EWT and German-GSD, in a UD release's layout."""
    for code in ("en_ewt", "de_gsd"):
        for split, sentences in SLICE.items():
            source = treebank_file(SHARED_UD_FOLDER, code, split)
            blocks = source.read_text(encoding="utf-8").split("\n\n")[:sentences]
            (folder / source.parent.name).mkdir(parents=True, exist_ok=True)
            (folder / source.parent.name / source.name).write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
    return folder


def test_a_real_ud_slice_trains_scores_and_reloads_with_plain_transformers(tmp_path: Path):
    folder = ud_slice(tmp_path / "ud")
    spec = TaskSpec(ud={"folder": folder})
    task = load_task(spec, "en", ["de"])
    assert len(task.source_train) == SLICE["dev"] and len(task.target_test["de"]) == SLICE["test"]
    words = {word.lower() for split in (task.source_train, task.source_validation, task.target_validation["de"]) for sentence in split["tokens"] for word in sentence}
    teacher = tiny_teacher(tmp_path / "teacher", sorted(words))
    settings = {
        "teacher": str(teacher), "task": {"ud": {"folder": str(folder)}}, "source_lang": "en", "target_lang": "de",
        "output_dir": str(tmp_path / "out"),
        "task_teacher": {"steps": 30, "eval_every": 10, "batch_size": 8, "lr": 3e-3, "validation_examples": 16},
        "vocabulary": {"word_frequencies": False},
        "student": {"layers": 2},
        "phase1": {"steps": 4, "eval_every": 2, "batch_size": 8, "validation_sentences": 4},
        "phase2": {"full_steps": 6, "sparse_steps": 6, "eval_every": 3, "batch_size": 8, "lr": 3e-3, "validation_examples": 16},
    }  # fmt: skip
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(settings))
    run_main([str(config)])

    result = json.loads((tmp_path / "out" / "en-de" / "result.json").read_text())
    assert result["metric"] == "token_accuracy" and 0 < result["target_score"] <= 1
    # Above always guessing the commonest English tag: the teacher learnt something of the tags.
    train_tags = [tag for tags in task.source_train["tags"] for tag in tags]
    majority = max(train_tags.count(tag) for tag in set(train_tags)) / len(train_tags)
    assert result["teacher_source_score"] > majority
    student_dir = tmp_path / "out" / "en-de" / "student"
    plain = AutoModelForTokenClassification.from_pretrained(student_dir).eval()
    assert set(plain.config.id2label.values()) == set(task.label_names)
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    ours, _ = load_exported(student_dir)
    test = task.target_test["de"]
    assert [p.tolist() for p in predict(plain, tokenizer, test, ["tokens"])] == [p.tolist() for p in predict(ours, tokenizer, test, ["tokens"])]
