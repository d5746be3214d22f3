"""A tiny extractive QA task for tests: "who lives in paris?" over a context that names one person per
city, in English and German, with the answer's character offset. Contexts are long enough for a small
`max_length` to cut them into several windows.

Import them by name: `from tiny_qa_task import QA_WORDS, qa_task_files`.
"""

from __future__ import annotations

import json
from pathlib import Path

PEOPLE, CITIES = ["anna", "peter", "maria", "paul"], ["paris", "berlin", "rome", "oslo"]
VERB = {"en": ("lives", "in", "who", "where", "does"), "de": ("wohnt", "in", "wer", "wo", "tut")}
QA_WORDS = [*PEOPLE, *CITIES, *{word for words in VERB.values() for word in words}, "?", "."]


def questions(lang: str, count: int) -> list[dict]:
    lives, in_, who, _, _ = VERB[lang]
    rows = []
    for index in range(count):
        shift = index % 4
        pairs = [(PEOPLE[(i + shift) % 4], CITIES[i]) for i in range(4)]
        context = " ".join(f"{person} {lives} {in_} {city} ." for person, city in pairs)
        person, city = pairs[index % 4]
        answer_start = context.index(f"{person} {lives} {in_} {city}")
        rows.append({"id": f"{lang}-{index}", "question": f"{who} {lives} {in_} {city} ?", "context": context,
                     "answers": {"text": [person], "answer_start": [answer_start]}})  # fmt: skip
    return rows


def qa_task_files(folder: Path) -> dict:
    """English train and validation (jsonl), German test (SQuAD's nested json) and target validation
    (jsonl), and phase-1 text for both languages."""
    folder.mkdir()

    def jsonl(name: str, rows: list[dict]) -> str:
        (folder / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
        return str(folder / name)

    test = [{"paragraphs": [{"context": row["context"], "qas": [{"id": row["id"], "question": row["question"],
             "answers": [{"text": row["answers"]["text"][0], "answer_start": row["answers"]["answer_start"][0]}]}]}]}
            for row in questions("de", 12)]  # fmt: skip
    (folder / "test-de.json").write_text(json.dumps({"version": "1.1", "data": test}))
    corpora = {}
    for lang in ("en", "de"):
        (folder / f"{lang}.txt").write_text("\n".join(row["context"] for row in questions(lang, 40)))
        corpora[lang] = {"file": str(folder / f"{lang}.txt")}
    return {
        "task": {"files": {"kind": "qa", "train": jsonl("train.jsonl", questions("en", 48)),
                           "validation": jsonl("validation.jsonl", questions("en", 8)),
                           "test": {"de": str(folder / "test-de.json")},
                           "target_validation": {"de": jsonl("validation-de.jsonl", questions("de", 8))}}},
        "corpora": corpora,
    }  # fmt: skip
