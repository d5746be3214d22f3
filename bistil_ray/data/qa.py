"""Extractive question answering in SQuAD's schema: a question, a context, and answers that are spans
of the context (their text and character offset).

Files: jsonl, json or parquet with a row per question (`question`, `context`, `answers` as
`{"text": [...], "answer_start": [...]}`, an optional `id`), or SQuAD's own nested json
(`{"data": [{"paragraphs": [{"context": ..., "qas": [...]}]}]}`). Hub datasets (squad, xquad, mlqa)
have the row layout. Every answer must sit at its offset in its context; an unanswerable question
(SQuAD 2.0) is refused, as this task kind always answers with a span.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import datasets

from bistil_ray.data.files import check_readable_file, json_document, read_table, read_text
from bistil_ray.errors import UserInputError

QUESTION, CONTEXT, ANSWER_TEXTS, ANSWER_STARTS, QA_ID = "question", "context", "answer_texts", "answer_starts", "id"
QA_FORMATS = (".jsonl", ".json", ".parquet")


def qa_features() -> datasets.Features:
    text = datasets.Value("string")
    return datasets.Features({QA_ID: text, QUESTION: text, CONTEXT: text, ANSWER_TEXTS: datasets.Sequence(text),
                              ANSWER_STARTS: datasets.Sequence(datasets.Value("int64"))})  # fmt: skip


def qa_dataset(rows: Iterable[dict[str, Any]], where: str, question_field: str, context_field: str, answers_field: str) -> datasets.Dataset:
    """Rows of SQuAD's layout -> the QA schema, every example checked (one line naming `where` and it)."""
    columns: dict[str, list] = {name: [] for name in qa_features()}
    for number, row in enumerate(rows, start=1):
        example = checked_example(where, number, row, question_field, context_field, answers_field)
        for name, value in example.items():
            columns[name].append(value)
    if not columns[QUESTION]:
        raise UserInputError(f"{where}: no questions")
    return datasets.Dataset.from_dict(columns, features=qa_features())


def checked_example(where: str, number: int, row: Any, question_field: str, context_field: str, answers_field: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise UserInputError(f"{where}: example {number} is not an object")
    name = f"example {number}" + (f" (id {row['id']})" if isinstance(row.get("id"), (str, int)) and row.get("id") != "" else "")
    for field in (question_field, context_field, answers_field):
        if field not in row:
            raise UserInputError(f"{where}: {name}: no '{field}' (fields: {', '.join(map(str, row))})")
    question, context, answers = row[question_field], row[context_field], row[answers_field]
    for field, value in ((question_field, question), (context_field, context)):
        if not isinstance(value, str) or not value.strip():
            raise UserInputError(f"{where}: {name}: '{field}' must be non-empty text")
    if not isinstance(answers, dict) or not isinstance(answers.get("text"), list) or not isinstance(answers.get("answer_start"), list):
        raise UserInputError(f"{where}: {name}: '{answers_field}' must be {{\"text\": [...], \"answer_start\": [...]}}")
    texts, starts = answers["text"], answers["answer_start"]
    if not texts:
        raise UserInputError(f"{where}: {name}: no answer (unanswerable questions are not supported)")
    if len(texts) != len(starts):
        raise UserInputError(f"{where}: {name}: {len(texts)} answer texts but {len(starts)} answer_start offsets")
    for text, start in zip(texts, starts):
        if not isinstance(text, str) or not text.strip():
            raise UserInputError(f"{where}: {name}: an answer's text must be non-empty text, got {text!r}")
        if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= len(context) - len(text):
            raise UserInputError(f"{where}: {name}: answer {text!r} has offset {start!r}, not within its context ({len(context)} characters)")
        if context[start : start + len(text)] != text:
            found = context[start : start + len(text)]
            raise UserInputError(f"{where}: {name}: answer {text!r} is not at offset {start} of its context (found {found!r})")
    identifier = row.get("id")
    return {QA_ID: str(identifier) if identifier is not None else str(number), QUESTION: question, CONTEXT: context,
            ANSWER_TEXTS: list(texts), ANSWER_STARTS: list(starts)}  # fmt: skip


def squad_rows(document: dict, where: str) -> list[dict[str, Any]]:
    """SQuAD's nested json as rows of the flat layout."""
    rows = []
    for article in document["data"] if isinstance(document.get("data"), list) else []:
        for paragraph in article.get("paragraphs", []) if isinstance(article, dict) else []:
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list):
                raise UserInputError(f"{where}: a paragraph without a list of 'qas'")
            for qa in paragraph["qas"]:
                if not isinstance(qa, dict) or not isinstance(qa.get("answers"), list):
                    raise UserInputError(f"{where}: a question without a list of 'answers'")
                answers = qa["answers"]
                if not all(isinstance(answer, dict) for answer in answers):
                    raise UserInputError(f"{where}: question {qa.get('id', '?')}: an answer is not an object")
                rows.append({"id": qa.get("id"), "question": qa.get("question"), "context": paragraph.get("context"),
                             "answers": {"text": [a.get("text") for a in answers], "answer_start": [a.get("answer_start") for a in answers]}})  # fmt: skip
    return rows


def qa_file(path: Path, question_field: str, context_field: str, answers_field: str) -> datasets.Dataset:
    path = Path(path)
    check_readable_file(path)
    suffix = path.suffix.lower()
    if suffix not in QA_FORMATS:
        raise UserInputError(f"{path}: unknown extension '{path.suffix}' for a qa task (use {', '.join(QA_FORMATS)})")
    rows: list = []
    if suffix == ".json":
        try:
            document = json_document(path, read_text(path))
        except json.JSONDecodeError:
            document = None  # JSON lines, perhaps: read_table says
        if isinstance(document, dict) and "data" in document:
            rows = squad_rows(document, str(path))
    if not rows:
        rows = read_table(path)
    return qa_dataset(rows, str(path), question_field, context_field, answers_field)
