"""A tiny teacher and a tiny files task for tests that run the real pipeline in seconds: a random
4-layer BERT with a WordPiece vocabulary of given words, and an English -> German topic task of
three topics written in three words each.

Import them by name: `from tiny_task import TINY_SETTINGS, files_task, tiny_teacher`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TOPICS = {"food": ["bread", "soup", "apple"], "money": ["bank", "coin", "price"], "sports": ["ball", "goal", "team"]}
GERMAN = {"bread": "brot", "soup": "suppe", "apple": "apfel", "bank": "bank", "coin": "münze", "price": "preis",
          "ball": "ball", "goal": "tor", "team": "mannschaft"}  # fmt: skip


# Every phase a few steps on the tiny teacher and task: the pipeline end to end in seconds.
TINY_SETTINGS = {
    "source_lang": "en",
    "task_teacher": {"steps": 4, "eval_every": 2, "batch_size": 8, "lr": 1e-3},
    "vocabulary": {"word_frequencies": False},
    "student": {"layers": 2},
    "phase1": {"steps": 2, "eval_every": 2, "batch_size": 8, "validation_sentences": 8},
    "phase2": {"full_steps": 2, "sparse_steps": 2, "eval_every": 2, "batch_size": 8, "lr": 1e-3},
}


def tiny_teacher(folder: Path, words: list[str]) -> Path:
    """A random 4-layer BERT whose WordPiece vocabulary is `words`."""
    vocab = SPECIAL + sorted(set(words) - set(SPECIAL))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64
    )
    BertModel(config).save_pretrained(folder)
    BertTokenizerFast(vocab={piece: index for index, piece in enumerate(vocab)}).save_pretrained(folder)
    return folder


def topic_rows(words_of: dict[str, list[str]], labels: list[str]) -> list[dict]:
    return [
        {"text": f"{words_of[label][i % 3]} {words_of[label][(i + 1) % 3]}", "label": label}
        for i, label in enumerate(labels)
    ]


def files_task(folder: Path) -> dict:
    """English train/validation, German test and validation with different label mixes (so that a
    model guessing one class scores differently on the two German sets)."""
    folder.mkdir()
    german = {topic: [GERMAN[word] for word in words] for topic, words in TOPICS.items()}
    splits = {
        "train": (TOPICS, list(TOPICS) * 8),
        "validation": (TOPICS, list(TOPICS) * 2),
        "test-de": (german, ["food"] * 6 + ["money"] * 2 + ["sports"] * 2),
        "validation-de": (german, ["food"] * 2 + ["money"] * 4 + ["sports"] * 2),
    }
    paths = {}
    for name, (words_of, labels) in splits.items():
        paths[name] = folder / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(row) + "\n" for row in topic_rows(words_of, labels)))
    corpora = {}
    for lang, words_of in (("en", TOPICS), ("de", german)):
        corpora[lang] = {"file": str(folder / f"{lang}.txt")}
        (folder / f"{lang}.txt").write_text("\n".join(row["text"] for row in topic_rows(words_of, list(TOPICS) * 10)))
    return {
        "task": {
            "files": {
                "train": str(paths["train"]),
                "validation": str(paths["validation"]),
                "test": {"de": str(paths["test-de"])},
                "target_validation": {"de": str(paths["validation-de"])},
            }
        },
        "corpora": corpora,
    }
