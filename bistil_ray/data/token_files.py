"""Token-labelled files: one list of words and one tag per word for each sentence.

Three layouts, chosen by extension:
  .jsonl / .json / .parquet  a row per sentence, a column of words and a column of tags (names or ids);
  .conllu                    CoNLL-U, read with the `conllu` package: FORM and one tag column (UPOS by
                             default, or XPOS, DEPREL, ...); multi-word token ranges and empty nodes
                             are left out, as UD's own evaluation does;
  .conll                     CoNLL-2003 style: a word per line, tab-separated columns, the word first
                             and the tag last, sentences separated by blank lines (`conllu` with
                             generic column names).
Each problem is a one-line `UserInputError` naming the file and the sentence or line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import conllu

from bistil_ray.data.files import check_readable_file, label_value, read_table, read_text, text_value
from bistil_ray.errors import UserInputError

TOKEN_FORMATS = (".jsonl", ".json", ".parquet", ".conllu", ".conll")
# The CoNLL-U column read when the config keeps the token tasks' default `label_field`.
DEFAULT_CONLLU_TAG = "upos"
CONLLU_TAG_COLUMNS = ("upos", "xpos", "deprel", "deps", "misc", "lemma", "feats", "head")
_GENERIC_COLUMNS = tuple(f"column{index}" for index in range(1, 33))

Sentence = tuple[list[str], list[str]]


def tagged_sentences(path: Path, words_field: str, tags_field: str) -> list[Sentence]:
    """(words, tag names) per sentence of `path`; at least one sentence, each with one tag per word."""
    path = Path(path)
    check_readable_file(path)
    suffix = path.suffix.lower()
    if suffix not in TOKEN_FORMATS:
        raise UserInputError(f"{path}: unknown extension '{path.suffix}' for a token task (use {', '.join(TOKEN_FORMATS)})")
    if suffix == ".conllu":
        sentences = _conllu_sentences(path, DEFAULT_CONLLU_TAG if tags_field == "tags" else tags_field)
    elif suffix == ".conll":
        sentences = _conll_sentences(path)
    else:
        sentences = _row_sentences(path, read_table(path), words_field, tags_field)
    if not sentences:
        raise UserInputError(f"{path}: no sentences")
    return sentences


def _parse(path: Path, fields: tuple[str, ...] | None) -> list[conllu.TokenList]:
    try:
        return conllu.parse(read_text(path), fields=fields)
    except conllu.exceptions.ParseException as error:
        message = " ".join(str(error).split())
        layout = "CoNLL-U" if fields is None else "CoNLL (a word and its tag per line, tab-separated)"
        raise UserInputError(f"{path}: not {layout}: {message}") from None


def parse_conllu(path: Path) -> list[conllu.TokenList]:
    """A CoNLL-U file's sentences, checked: a file that is not CoNLL-U is a one-line error."""
    check_readable_file(path)
    return _parse(path, None)


def _conllu_sentences(path: Path, column: str) -> list[Sentence]:
    if column not in CONLLU_TAG_COLUMNS:
        raise UserInputError(f"{path}: label_field '{column}' is not a CoNLL-U column (use one of {', '.join(CONLLU_TAG_COLUMNS)})")
    sentences = []
    for number, sentence in enumerate(_parse(path, None), start=1):
        words = [token for token in sentence if isinstance(token["id"], int)]
        if not words:
            raise UserInputError(f"{path}: sentence {number} has no words")
        tags = [token[column] for token in words]
        if any(tag in (None, "_") or not isinstance(tag, (str, int)) for tag in tags):
            raise UserInputError(f"{path}: sentence {number}: a word without a {column.upper()} tag")
        sentences.append(([str(token["form"]) for token in words], [str(tag) for tag in tags]))
    return sentences


def _conll_sentences(path: Path) -> list[Sentence]:
    sentences = []
    for number, sentence in enumerate(_parse(path, _GENERIC_COLUMNS), start=1):
        rows = [list(token.values()) for token in sentence]  # `conllu` refuses a line of one column
        if rows and str(rows[0][0]).startswith("-DOCSTART-"):
            continue
        sentences.append(([str(row[0]) for row in rows], [str(row[-1]) for row in rows]))
    return sentences


def _row_sentences(path: Path, rows: list[dict[str, Any]], words_field: str, tags_field: str) -> list[Sentence]:
    sentences = []
    for number, row in enumerate(rows, start=1):
        for column in (words_field, tags_field):
            if column not in row:
                raise UserInputError(f"{path}: row {number}: no column '{column}' (columns: {', '.join(row)})")
            if not isinstance(row[column], (list, tuple)) or not row[column]:
                raise UserInputError(f"{path}: row {number}: column '{column}' must hold a non-empty list")
        words, tags = row[words_field], row[tags_field]
        if len(words) != len(tags):
            raise UserInputError(f"{path}: row {number}: {len(words)} words but {len(tags)} tags")
        sentences.append(
            ([text_value(path, number, words_field, word) for word in words],
             [str(label_value(path, number, tags_field, tag)) for tag in tags])
        )  # fmt: skip
    return sentences


# --- parse tasks: each word's head and relation ------------------------------------------------------

# The 37 universal relations of UD v2. Language-specific subtypes (nmod:poss) are read as their
# universal relation, as the CoNLL 2018 shared task's LAS compares them.
UD_RELATIONS = (
    "acl", "advcl", "advmod", "amod", "appos", "aux", "case", "cc", "ccomp", "clf", "compound", "conj", "cop",
    "csubj", "dep", "det", "discourse", "dislocated", "expl", "fixed", "flat", "goeswith", "iobj", "list", "mark",
    "nmod", "nsubj", "nummod", "obj", "obl", "orphan", "parataxis", "punct", "reparandum", "root", "vocative", "xcomp",
)  # fmt: skip
ParsedSentence = tuple[list[str], list[int], list[str]]


def parsed_sentences(path: Path, words_field: str, heads_field: str, relations_field: str) -> list[ParsedSentence]:
    """(words, heads, universal relations) per sentence of `path`: CoNLL-U (FORM, HEAD, DEPREL), or rows
    with a column of words, one of heads and one of relations. Each sentence's heads form a tree."""
    path = Path(path)
    check_readable_file(path)
    suffix = path.suffix.lower()
    formats = tuple(name for name in TOKEN_FORMATS if name != ".conll")
    if suffix not in formats:
        raise UserInputError(f"{path}: unknown extension '{path.suffix}' for a parse task (use {', '.join(formats)})")
    if suffix == ".conllu":
        rows = []
        for number, sentence in enumerate(_parse(path, None), start=1):
            words = [token for token in sentence if isinstance(token["id"], int)]
            rows.append({"words": [str(token["form"]) for token in words], "heads": [token["head"] for token in words],
                         "relations": [token["deprel"] for token in words]})  # fmt: skip
        columns = ("words", "heads", "relations")
    else:
        rows, columns = read_table(path), (words_field, heads_field, relations_field)
    sentences = [_parsed_row(path, number, row, columns) for number, row in enumerate(rows, start=1)]
    if not sentences:
        raise UserInputError(f"{path}: no sentences")
    return sentences


def parsed_row(where: str, number: int, words: Any, heads: Any, relations: Any) -> ParsedSentence:
    """One sentence's words, heads and universal relations, checked: one head and one relation per
    word, each head a word of the sentence or 0, the heads a tree (no cycle), each relation UD's."""
    for name, values in (("words", words), ("heads", heads), ("relations", relations)):
        if not isinstance(values, (list, tuple)) or not values:
            raise UserInputError(f"{where}: sentence {number}: its {name} must be a non-empty list")
    if not len(words) == len(heads) == len(relations):
        raise UserInputError(f"{where}: sentence {number}: {len(words)} words, {len(heads)} heads, {len(relations)} relations")
    checked_heads = []
    for word, head in enumerate(heads, start=1):
        try:
            value = int(head) if not isinstance(head, (bool, float)) else None
        except (TypeError, ValueError):
            value = None
        if value is None or not 0 <= value <= len(words) or value == word:
            raise UserInputError(f"{where}: sentence {number}: word {word}'s head {head!r} is not 0 or another word's number (1-{len(words)})")
        checked_heads.append(value)
    cycle = _cycle(checked_heads)
    if cycle:
        raise UserInputError(f"{where}: sentence {number}: the heads form a cycle through words {', '.join(map(str, cycle))}")
    universal = []
    for word, relation in enumerate(relations, start=1):
        name = str(relation).split(":")[0] if isinstance(relation, str) else None
        if name not in UD_RELATIONS:
            raise UserInputError(f"{where}: sentence {number}: word {word}'s relation {relation!r} is not a UD relation")
        universal.append(name)
    return [str(word) for word in words], checked_heads, universal


def _parsed_row(path: Path, number: int, row: dict[str, Any], columns: tuple[str, str, str]) -> ParsedSentence:
    for column in columns:
        if column not in row:
            raise UserInputError(f"{path}: row {number}: no column '{column}' (columns: {', '.join(row)})")
    words = row[columns[0]]
    if isinstance(words, (list, tuple)):
        words = [text_value(path, number, columns[0], word) for word in words]
    return parsed_row(str(path), number, words, row[columns[1]], row[columns[2]])


def _cycle(heads: list[int]) -> list[int]:
    """The words of a cycle among `heads` (1-based, 0 the root), or [] when every word reaches the root."""
    reaches_root: set[int] = {0}
    for start in range(1, len(heads) + 1):
        path: list[int] = []
        word = start
        while word not in reaches_root:
            if word in path:
                return path[path.index(word):]
            path.append(word)
            word = heads[word - 1]
        reaches_root.update(path)
    return []
