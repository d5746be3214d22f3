"""Fuzzing the readers of user files through `python -m bistil_ray.sweep --dry-run`: labelled tables
(jsonl, json, csv, tsv, parquet), phase-1 text files and the sweep / run YAML paths.

Each case is a kind of bad (or merely unusual) file in every format that can hold it: types (nulls,
mixed, nested, numbers as text), encodings (UTF-16, byte-order mark, invalid bytes), sizes (empty,
one row, a 10 MB line) and structure (missing, extra, duplicated columns). Every case must end in
exit status 2 with one line on stderr (file-descriptor level, so that library logging counts) that
names the file, and nothing written; or be accepted, and then read into exactly the rows meant.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from bistil_ray.config import TaskSpec
from bistil_ray.data.corpora import load_corpus
from bistil_ray.data.tasks import load_task
from bistil_ray.sweep import main as sweep_main

PREFIX = "bistil_ray.sweep: error: "
TABLES = ("jsonl", "json", "csv", "tsv", "parquet")
GOOD = [{"text": f"sentence {i}", "label": ["food", "money"][i % 2]} for i in range(4)]
LONG = "word " * 2_000_000  # a 10 MB line


def write_table(path: Path, rows: list[dict], encoding: str = "utf-8") -> None:
    """`rows` in the format of `path`'s extension (csv/tsv: the union of keys as the header)."""
    kind = path.suffix[1:]
    if kind == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
        return
    if kind == "jsonl":
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    elif kind == "json":
        text = json.dumps(rows, ensure_ascii=False)
    else:
        delimiter = "," if kind == "csv" else "\t"
        header = list(dict.fromkeys(key for row in rows for key in row))
        cell = lambda value: "" if value is None else str(value)  # noqa: E731
        text = "\n".join([delimiter.join(header)] + [delimiter.join(cell(row.get(key)) for key in header) for row in rows])
    path.write_bytes(text.encode(encoding))


@dataclass(frozen=True)
class TableCase:
    """A train file. `refused`: format -> part of the message (None: that format accepts the file,
    and `expected` are the (text, label) rows it must read); formats absent cannot hold the case."""

    id: str
    refused: dict[str, str | None]
    rows: list[dict] = field(default_factory=list)
    raw: Callable[[str], bytes] | None = None  # the file's bytes for a format, instead of `rows`
    encoding: str = "utf-8"
    expected: list[tuple[str, str]] | None = None


def every(message: str | None, formats=TABLES) -> dict[str, str | None]:
    return {kind: message for kind in formats}


TEXT_FORMATS = ("jsonl", "json", "csv", "tsv")
TYPED = ("jsonl", "json", "parquet")  # formats whose cells have types (csv/tsv cells are all text)

TABLE_CASES = [
    # types
    TableCase("null_text_every_row", every("row 1: no text in column 'text'"), [{"text": None, "label": "food"}] * 3),
    TableCase("null_text_one_row", every("row 3: no text in column 'text'"), GOOD[:2] + [{"text": None, "label": "food"}]),
    TableCase("null_label", every("row 2: no label in column 'label'"), [GOOD[0], {"text": "x", "label": None}]),
    TableCase(
        "mixed_label_kinds",
        {**every("column 'label' mixes numbers and text (row 1: 1, row 2: 'money')", ("jsonl", "json")),
         **every(None, ("csv", "tsv"))},
        [{"text": "a", "label": 1}, {"text": "b", "label": "money"}],
        expected=[("a", "1"), ("b", "money")],
    ),  # fmt: skip
    TableCase("nested_text", every("row 1: column 'text' holds a list, not text", TYPED), [{"text": ["a", "b"], "label": "food"}]),
    TableCase("object_text", every("row 1: column 'text' holds an object, not text", ("jsonl", "json")), [{"text": {"a": 1}, "label": "food"}]),
    TableCase("bool_label", every("row 1: column 'label' holds true/false, not a class name or id", TYPED), [{"text": "a", "label": True}]),
    TableCase("fractional_label", every("row 1: column 'label' holds float, not a class name or id", TYPED), [{"text": "a", "label": 1.5}]),
    TableCase(
        "numbers_as_text",
        every(None),
        [{"text": 12, "label": "2"}, {"text": 35, "label": "10"}],
        expected=[("12", "2"), ("35", "10")],
    ),
    TableCase(
        "integer_labels",
        every(None),
        [{"text": "a", "label": 10}, {"text": "b", "label": 2}],
        expected=[("a", "10"), ("b", "2")],
    ),
    # structure
    TableCase("missing_label_column", every("no column 'label' (columns: text)"), [{"text": "a"}]),
    TableCase(
        "extra_columns",
        every(None),
        [{"id": 1, "text": "a", "label": "food", "note": "x"}],
        expected=[("a", "food")],
    ),
    TableCase("row_without_label", {**every("row 2: no column 'label'", ("jsonl", "json"))}, [GOOD[0], {"text": "b"}]),
    TableCase(
        "duplicated_column",
        {"jsonl": "line 1: key 'text' appears twice", "json": "key 'text' appears twice in one object",
         "csv": "column 'text' appears twice in the header", "tsv": "column 'text' appears twice in the header"},
        raw=lambda kind: {
            "jsonl": b'{"text": "a", "text": "b", "label": "food"}\n',
            "json": b'[{"text": "a", "text": "b", "label": "food"}]',
            "csv": b"text,label,text\na,food,b\n",
            "tsv": b"text\tlabel\ttext\na\tfood\tb\n",
        }[kind],
    ),  # fmt: skip
    TableCase(
        "row_of_the_wrong_width",
        {"csv": "line 3: 1 fields, but the header has 2", "tsv": "line 3: 1 fields, but the header has 2"},
        raw=lambda kind: {"csv": b"text,label\na,food\nb\n", "tsv": b"text\tlabel\na\tfood\nb\n"}[kind],
    ),
    TableCase("malformed_line", {"jsonl": "line 2: not valid JSON"}, raw=lambda _: b'{"text": "a", "label": "food"}\n{"text": "b", "label\n'),
    TableCase("scalar_line", {"jsonl": "line 1: not a JSON object"}, raw=lambda _: b"5\n"),
    TableCase("not_a_list", {"json": "expected a JSON list of objects"}, raw=lambda _: b'{"text": "a", "label": "food"}'),
    TableCase("list_of_scalars", {"json": "item 1 of the list is not an object"}, raw=lambda _: b'[1, 2]'),
    TableCase(
        "json_lines_in_a_json_file",
        {"json": None},
        raw=lambda _: b'{"text": "a", "label": "food"}\n{"text": "b", "label": "food"}\n',
        expected=[("a", "food"), ("b", "food")],
    ),
    # sizes
    TableCase("empty_file", every("empty file"), raw=lambda _: b""),
    TableCase("only_white_space", {**every("no rows", TEXT_FORMATS), "parquet": "not readable as Parquet"}, raw=lambda _: b"\n  \n"),
    TableCase("no_rows", {**every("no rows", TEXT_FORMATS)}, raw=lambda kind: {"jsonl": b"\n", "json": b"[]", "csv": b"text,label\n", "tsv": b"text\tlabel\n"}[kind]),
    TableCase("one_row", every(None), [GOOD[0]], expected=[("sentence 0", "food")]),
    TableCase("a_10_mb_line", every(None), [{"text": LONG, "label": "food"}], expected=[(LONG, "food")]),
    # encodings
    TableCase("utf16_with_bom", every("not UTF-8 text (line 1)", TEXT_FORMATS), GOOD, encoding="utf-16"),
    TableCase("utf16_without_bom", every("NUL bytes at line 1: not UTF-8 text (UTF-16?)", TEXT_FORMATS), GOOD, encoding="utf-16-le"),
    TableCase("utf8_bom", every(None, TEXT_FORMATS), [GOOD[0]], encoding="utf-8-sig", expected=[("sentence 0", "food")]),
    TableCase(
        "invalid_bytes_on_line_2",
        {kind: "not UTF-8 text (line 2)" for kind in ("jsonl", "csv", "tsv")},
        raw=lambda kind: {"jsonl": b'{"text": "a", "label": "x"}\n{"text": "caf\xe9", "label": "x"}\n',
                          "csv": b"text,label\ncaf\xe9,x\n", "tsv": b"text\tlabel\ncaf\xe9\tx\n"}[kind],
    ),  # fmt: skip
    TableCase("not_parquet", {"parquet": "not readable as Parquet"}, raw=lambda _: b"PAR1 but not really"),
]
TABLE_PARAMS = [
    pytest.param(case, kind, id=f"{case.id}-{kind}") for case in TABLE_CASES for kind in TABLES if kind in case.refused
]


def sweep_settings(folder: Path, labelled: Path) -> dict:
    """A files task whose train, validation and test file are all `labelled` (so that an accepted
    file has the labels of each split)."""
    folder.mkdir(exist_ok=True)
    for lang in ("en", "de"):
        (folder / f"{lang}.txt").write_text("one sentence\nanother one\n")
    return {
        "name": "fuzz",
        "target_langs": ["de"],
        "task": {"files": {"train": str(labelled), "validation": str(labelled), "test": {"de": str(labelled)}}},
        "corpora": {lang: {"file": str(folder / f"{lang}.txt")} for lang in ("en", "de")},
    }


def dry_run(folder: Path, settings: dict, capfd, config: Path | None = None) -> tuple[int, list[str]]:
    """Exit status and stderr lines of `sweep --dry-run`; the storage must stay unwritten."""
    if config is None:
        config = folder / "sweep.yaml"
        config.write_text(yaml.safe_dump(settings))
    storage = folder / "storage"
    capfd.readouterr()
    try:
        code = sweep_main([str(config), "--storage", str(storage), "--dry-run"])
    except SystemExit as exited:
        code = exited.code
    lines = capfd.readouterr().err.strip().splitlines()
    assert not storage.exists()
    return code, lines


def assert_refused(code: int, lines: list[str], path: Path, expected: str) -> None:
    assert code == 2 and len(lines) == 1 and lines[0].startswith(PREFIX), lines
    assert lines[0].startswith(f"{PREFIX}{path}: ") and expected in lines[0], lines[0]


def refused_or_loaded(folder: Path, settings: dict, capfd, train: Path, expected: str | None):
    """The dry run refuses `train` with `expected` in its one line (None returned), or accepts it
    (None expected): then the task as the trials load it."""
    code, lines = dry_run(folder, settings, capfd)
    if expected is not None:
        assert_refused(code, lines, train, expected)
        return None
    assert code == 0, lines
    return load_task(TaskSpec.model_validate(settings["task"]), "en", ["de"])


@pytest.mark.parametrize("case, kind", TABLE_PARAMS)
def test_labelled_file(case: TableCase, kind: str, tmp_path: Path, capfd):
    train = tmp_path / f"train.{kind}"
    if case.raw is not None:
        train.write_bytes(case.raw(kind))
    else:
        write_table(train, case.rows, case.encoding)
    task = refused_or_loaded(tmp_path, sweep_settings(tmp_path / "inputs", train), capfd, train, case.refused[kind])
    if task is not None:
        rows = [(text, task.label_names[label]) for text, label in zip(task.source_train["text"], task.source_train["label"])]
        assert rows == case.expected


@dataclass(frozen=True)
class PathCase:
    id: str
    expected: str  # part of the message; "" for an accepted file
    make: Callable[[Path, pytest.MonkeyPatch], Path]  # returns the path to give
    content: list[str] | None = None  # an accepted text file's sentences


def write(data: bytes) -> Callable[[Path, pytest.MonkeyPatch], Path]:
    def make(folder: Path, _: pytest.MonkeyPatch) -> Path:
        (folder / "target.txt").write_bytes(data)
        return folder / "target.txt"

    return make


def a_folder(folder: Path, _) -> Path:
    (folder / "texts").mkdir()
    return folder / "texts"


def a_symlink_loop(folder: Path, _) -> Path:
    (folder / "loop").symlink_to(folder / "loop")
    return folder / "loop"


def unreadable(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Permission bits do not stop root (as which tests may run): refuse the open itself."""
    path = folder / "locked.txt"
    path.write_text("one\n")
    real_open = pathlib.Path.open

    def open_refused(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", open_refused)
    return path


PATH_CASES = [
    PathCase("folder", "is a directory, expected a file", a_folder),
    PathCase("device", "not a regular file (a device, pipe or socket)", lambda folder, _: Path("/dev/zero")),
    PathCase("symlink_loop", "a loop of symbolic links", a_symlink_loop),
    PathCase("unreadable", "not readable (Permission denied)", unreadable),
    PathCase("missing", "no such file", lambda folder, _: folder / "absent.txt"),
]
TEXT_CASES = PATH_CASES + [
    PathCase("empty", "no sentences", write(b"")),
    PathCase("blank", "no sentences", write(b"\n \t\n")),
    PathCase("utf16", "not UTF-8 text", write("eins\nzwei\n".encode("utf-16"))),
    PathCase("utf16_without_bom", "NUL bytes at line 1", write("eins\nzwei\n".encode("utf-16-le"))),
    PathCase("invalid_bytes", "not UTF-8 text", write("Grüße\n".encode("latin-1"))),
    PathCase("bom", "", write("eins\nzwei\n".encode("utf-8-sig")), content=["eins", "zwei"]),
    PathCase("one_line", "", write(b"eins"), content=["eins"]),
    PathCase("a_10_mb_line", "", write(LONG.encode() + b"\nzwei\n"), content=[LONG.strip(), "zwei"]),
]


@pytest.mark.parametrize("case", TEXT_CASES, ids=lambda case: case.id)
def test_phase1_text_file(case: PathCase, tmp_path: Path, monkeypatch, capfd):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    path = case.make(inputs, monkeypatch)
    write_table(inputs / "good.jsonl", GOOD)
    settings = sweep_settings(inputs, inputs / "good.jsonl")
    settings["corpora"]["de"] = {"file": str(path)}
    code, lines = dry_run(tmp_path, settings, capfd)
    if case.expected:
        assert_refused(code, lines, path, case.expected)
        return
    assert code == 0, lines
    spec = TaskSpec.model_validate(settings["task"])
    from bistil_ray.config import CorpusSpec

    assert load_corpus(spec, {"de": CorpusSpec(file=path)}, "de") == case.content


@pytest.mark.parametrize("case", PATH_CASES, ids=lambda case: case.id)
@pytest.mark.parametrize("program", ["sweep", "run"])
def test_config_path(program: str, case: PathCase, tmp_path: Path, monkeypatch, capfd):
    path = case.make(tmp_path, monkeypatch)
    if program == "sweep":
        code, lines = dry_run(tmp_path, {}, capfd, config=path)
    else:
        from bistil_ray.run import main as run_main

        capfd.readouterr()
        with pytest.raises(SystemExit) as exited:
            run_main([str(path)])
        code, lines = exited.value.code, capfd.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0] == f"bistil_ray.{program}: error: {path}: {case.expected}" or case.expected in lines[0], lines


def test_every_format_and_kind_is_covered():
    kinds = {case.id for case in TABLE_CASES}
    assert {"null_text_every_row", "mixed_label_kinds", "nested_text", "numbers_as_text"} <= kinds
    assert {"utf16_with_bom", "utf8_bom", "invalid_bytes_on_line_2", "empty_file", "one_row", "a_10_mb_line"} <= kinds
    assert {"missing_label_column", "extra_columns", "duplicated_column"} <= kinds
    assert all(any(kind == param.values[1] for param in TABLE_PARAMS) for kind in TABLES)
    assert len(TABLE_PARAMS) >= 80


# --- token-labelled files (kind: token) ---------------------------------------------------------------

TOKEN_FORMATS = ("conll", "conllu", "jsonl")
GOOD_SENTENCES = [(["Anna", "lives"], ["B-PER", "O"]), (["Paris"], ["B-LOC"])]


def token_file(kind: str, sentences: list[tuple[list, list]]) -> str:
    if kind == "jsonl":
        return "".join(json.dumps({"tokens": words, "tags": tags}, ensure_ascii=False) + "\n" for words, tags in sentences)
    if kind == "conll":
        return "\n\n".join("\n".join(f"{w}\t{t}" for w, t in zip(words, tags)) for words, tags in sentences) + "\n"
    return "\n\n".join(
        "\n".join(f"{i}\t{w}\t_\t{t}\t_\t_\t0\tdep\t_\t_" for i, (w, t) in enumerate(zip(words, tags), 1)) for words, tags in sentences
    ) + "\n"  # fmt: skip


@dataclass(frozen=True)
class TokenCase:
    """A token train file: `make(kind)` its bytes; `refused`: format -> part of the message, None
    where that format accepts the file and must read `expected` (words, tags) back."""

    id: str
    refused: dict[str, str | None]
    make: Callable[[str], bytes]
    expected: list[tuple[list[str], list[str]]] | None = None


def each(text: str | None) -> dict[str, str | None]:
    return {kind: text for kind in TOKEN_FORMATS}


TOKEN_CASES = [
    TokenCase("good", each(None), lambda kind: token_file(kind, GOOD_SENTENCES).encode(), GOOD_SENTENCES),
    TokenCase("utf8_bom", each(None), lambda kind: token_file(kind, GOOD_SENTENCES).encode("utf-8-sig"), GOOD_SENTENCES),
    TokenCase("a_10_mb_word", each(None), lambda kind: token_file(kind, [([LONG.replace(" ", "")], ["O"])]).encode(),
              [([LONG.replace(" ", "")], ["O"])]),  # fmt: skip
    TokenCase("empty", {"conll": "no sentences", "conllu": "no sentences", "jsonl": "empty file"}, lambda kind: b""),
    TokenCase("utf16", each("not UTF-8 text"), lambda kind: token_file(kind, GOOD_SENTENCES).encode("utf-16")),
    TokenCase("utf16_without_bom", each("NUL bytes"), lambda kind: token_file(kind, GOOD_SENTENCES).encode("utf-16-le")),
    TokenCase("invalid_bytes", each("not UTF-8 text"), lambda kind: token_file(kind, [(["caf\xe9"], ["O"])]).encode("latin-1")),
    TokenCase("space_separated", {"conll": "a word and its tag per line, tab-separated", "conllu": "not CoNLL-U"},
              lambda kind: b"Anna B-PER\nlives O\n"),  # fmt: skip
    TokenCase("missing_tag", {"conllu": "without a UPOS tag"}, lambda kind: b"1\tAnna\t_\t_\t_\t_\t0\tdep\t_\t_\n"),
    TokenCase("more_words_than_tags", {"jsonl": "2 words but 1 tags"}, lambda kind: b'{"tokens": ["a", "b"], "tags": ["O"]}\n'),
    TokenCase("null_word", {"jsonl": "no text in column 'tokens'"}, lambda kind: b'{"tokens": [null], "tags": ["O"]}\n'),
    TokenCase("nested_tag", {"jsonl": "holds a list, not a class name or id"}, lambda kind: b'{"tokens": ["a"], "tags": [["O"]]}\n'),
    TokenCase("words_as_text", {"jsonl": "must hold a non-empty list"}, lambda kind: b'{"tokens": "a b", "tags": ["O", "O"]}\n'),
    TokenCase("no_words", {"jsonl": "must hold a non-empty list"}, lambda kind: b'{"tokens": [], "tags": []}\n'),
    TokenCase("numeric_tags", {"jsonl": None}, lambda kind: b'{"tokens": ["a", "b"], "tags": [1, 0]}\n', [(["a", "b"], ["1", "0"])]),
]
TOKEN_PARAMS = [pytest.param(case, kind, id=f"{case.id}-{kind}") for case in TOKEN_CASES for kind in TOKEN_FORMATS if kind in case.refused]


@pytest.mark.parametrize("case, kind", TOKEN_PARAMS)
def test_token_file(case: TokenCase, kind: str, tmp_path: Path, capfd):
    train = tmp_path / f"train.{kind}"
    train.write_bytes(case.make(kind))
    settings = sweep_settings(tmp_path / "inputs", train)
    settings["task"]["files"]["kind"] = "token"
    task = refused_or_loaded(tmp_path, settings, capfd, train, case.refused[kind])
    if task is not None:
        rows = [(words, [task.label_names[tag] for tag in tags]) for words, tags in zip(task.source_train["tokens"], task.source_train["tags"])]
        assert rows == case.expected


@pytest.mark.parametrize("case", PATH_CASES, ids=lambda case: case.id)
def test_token_file_path(case: PathCase, tmp_path: Path, monkeypatch, capfd):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    good = inputs / "good.conll"
    good.write_text(token_file("conll", GOOD_SENTENCES))
    settings = sweep_settings(inputs, good)
    settings["task"]["files"].update(kind="token", train=str(case.make(inputs, monkeypatch)))
    code, lines = dry_run(tmp_path, settings, capfd)
    assert_refused(code, lines, Path(settings["task"]["files"]["train"]), case.expected)


# --- parsed files (kind: parse): each word's head and relation ---------------------------------------

PARSE_FORMATS = ("conllu", "jsonl")
GOOD_TREES = [(["Anna", "lives", "here"], [2, 0, 2], ["nsubj", "root", "advmod"]), (["Hello"], [0], ["root"])]


def parse_file(kind: str, trees: list[tuple[list, list, list]]) -> str:
    if kind == "jsonl":
        return "".join(json.dumps({"tokens": w, "head": h, "deprel": r}, ensure_ascii=False) + "\n" for w, h, r in trees)
    return "\n\n".join(
        "\n".join(f"{i}\t{w}\t_\tX\t_\t_\t{h}\t{r}\t_\t_" for i, (w, h, r) in enumerate(zip(words, heads, relations), 1))
        for words, heads, relations in trees
    ) + "\n"  # fmt: skip


def parse_case(id: str, refused: str | None, trees, expected=None, kinds=PARSE_FORMATS) -> TokenCase:
    return TokenCase(id, {kind: refused for kind in kinds}, lambda kind: parse_file(kind, trees).encode(), expected)


PARSE_CASES = [
    parse_case("good", None, GOOD_TREES, GOOD_TREES),
    TokenCase("utf8_bom", {kind: None for kind in PARSE_FORMATS}, lambda kind: parse_file(kind, GOOD_TREES).encode("utf-8-sig"), GOOD_TREES),
    TokenCase("empty", {"conllu": "no sentences", "jsonl": "empty file"}, lambda kind: b""),
    parse_case("subtype_read_as_its_relation", None, [(["a", "b"], [0, 1], ["root", "nmod:poss"])], [(["a", "b"], [0, 1], ["root", "nmod"])]),
    parse_case("head_past_the_last_word", "word 2's head 3 is not 0 or another word's number (1-2)", [(["a", "b"], [0, 3], ["root", "dep"])]),
    parse_case("negative_head", "word 1's head -1", [(["a", "b"], [-1, 1], ["root", "dep"])], kinds=("jsonl",)),
    parse_case("word_heads_itself", "word 2's head 2", [(["a", "b"], [0, 2], ["root", "dep"])]),
    parse_case("cycle", "the heads form a cycle through words 2, 3", [(["a", "b", "c"], [0, 3, 2], ["root", "dep", "dep"])]),
    parse_case("no_root", "cycle through words 1, 2", [(["a", "b"], [2, 1], ["dep", "dep"])]),
    parse_case("not_a_ud_relation", "word 1's relation 'subject' is not a UD relation", [(["a"], [0], ["subject"])]),
    parse_case("head_as_text", None, [(["a", "b"], ["0", "1"], ["root", "dep"])], [(["a", "b"], [0, 1], ["root", "dep"])], kinds=("jsonl",)),
    parse_case("head_as_a_word", "word 1's head 'x'", [(["a"], ["x"], ["root"])], kinds=("jsonl",)),
    parse_case("fractional_head", "word 1's head 0.5", [(["a"], [0.5], ["root"])], kinds=("jsonl",)),
    parse_case("boolean_head", "word 1's head False", [(["a"], [False], ["root"])], kinds=("jsonl",)),
    parse_case("more_heads_than_words", "1 words, 2 heads, 1 relations", [(["a"], [0, 1], ["root"])], kinds=("jsonl",)),
    parse_case("null_relation", "relation None is not a UD relation", [(["a"], [0], [None])], kinds=("jsonl",)),
    TokenCase("missing_head", {"conllu": "word 1's head None"}, lambda kind: b"1\tAnna\t_\tX\t_\t_\t_\troot\t_\t_\n"),
    TokenCase("no_words", {"jsonl": "its words must be a non-empty list"}, lambda kind: b'{"tokens": [], "head": [], "deprel": []}\n'),
    TokenCase("no_head_column", {"jsonl": "no column 'head'"}, lambda kind: b'{"tokens": ["a"], "deprel": ["root"]}\n'),
]
PARSE_PARAMS = [pytest.param(case, kind, id=f"{case.id}-{kind}") for case in PARSE_CASES for kind in PARSE_FORMATS if kind in case.refused]


@pytest.mark.parametrize("case, kind", PARSE_PARAMS)
def test_parse_file(case: TokenCase, kind: str, tmp_path: Path, capfd):
    train = tmp_path / f"train.{kind}"
    train.write_bytes(case.make(kind))
    settings = sweep_settings(tmp_path / "inputs", train)
    settings["task"]["files"]["kind"] = "parse"
    task = refused_or_loaded(tmp_path, settings, capfd, train, case.refused[kind])
    if task is not None:
        train_split = task.source_train
        rows = [(words, heads, [task.label_names[r] for r in relations])
                for words, heads, relations in zip(train_split["tokens"], train_split["heads"], train_split["tags"])]  # fmt: skip
        assert rows == [(list(w), list(h), list(r)) for w, h, r in case.expected]


# --- question-answering files (kind: qa) ---------------------------------------------------------------

QA_FORMATS = ("jsonl", "json")
GOOD_QUESTIONS = [{"id": "q1", "question": "who lives here?", "context": "Anna lives here.", "answers": {"text": ["Anna"], "answer_start": [0]}}]


def qa_file_text(kind: str, rows: list[dict]) -> str:
    if kind == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    paragraphs = [{"context": row["context"], "qas": [{"id": row["id"], "question": row["question"],
                   "answers": [{"text": t, "answer_start": s} for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"])]}]}
                  for row in rows]  # fmt: skip
    return json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}, ensure_ascii=False)


def qa_case(id: str, refused: str | None, rows: list[dict], kinds=QA_FORMATS) -> TokenCase:
    return TokenCase(id, {kind: refused for kind in kinds}, lambda kind: qa_file_text(kind, rows).encode(), rows)


def answered(text: str, start: int, **row) -> list[dict]:
    return [{**GOOD_QUESTIONS[0], **row, "answers": {"text": [text], "answer_start": [start]}}]


QA_CASES = [
    qa_case("good", None, GOOD_QUESTIONS),
    TokenCase("utf8_bom", {kind: None for kind in QA_FORMATS}, lambda kind: qa_file_text(kind, GOOD_QUESTIONS).encode("utf-8-sig"), GOOD_QUESTIONS),
    qa_case("non_ascii_context", None, answered("Zoë", 4, context="Hat Zoë gewonnen?")),
    TokenCase("empty", {"jsonl": "empty file", "json": "empty file"}, lambda kind: b""),
    TokenCase("utf16", {kind: "not UTF-8 text" for kind in QA_FORMATS}, lambda kind: qa_file_text(kind, GOOD_QUESTIONS).encode("utf-16")),
    TokenCase("invalid_bytes", {kind: "not UTF-8 text" for kind in QA_FORMATS}, lambda kind: qa_file_text(kind, answered("caf\xe9", 0, context="caf\xe9")).encode("latin-1")),
    qa_case("answer_elsewhere", "answer 'lives' is not at offset 0 of its context (found 'Anna ')", answered("lives", 0)),
    qa_case("offset_past_the_context", "answer 'Anna' has offset 99, not within its context (16 characters)", answered("Anna", 99)),
    qa_case("unanswerable", "no answer (unanswerable questions are not supported)", [{**GOOD_QUESTIONS[0], "answers": {"text": [], "answer_start": []}}]),
    qa_case("empty_question", "'question' must be non-empty text", answered("Anna", 0, question=" ")),
    TokenCase("row_not_an_object", {"jsonl": "line 1: not a JSON object"}, lambda kind: b'["who", "Anna lives here."]\n'),
    TokenCase("paragraph_without_questions", {"json": "a paragraph without a list of 'qas'"}, lambda kind: b'{"data": [{"paragraphs": [{"context": "x"}]}]}'),
    TokenCase("key_twice", {"json": "key 'context' appears twice in one object"},
              lambda kind: b'{"data": [{"paragraphs": [{"context": "a", "context": "b", "qas": []}]}]}'),
]
QA_PARAMS = [pytest.param(case, kind, id=f"{case.id}-{kind}") for case in QA_CASES for kind in QA_FORMATS if kind in case.refused]


@pytest.mark.parametrize("case, kind", QA_PARAMS)
def test_qa_file(case: TokenCase, kind: str, tmp_path: Path, capfd):
    train = tmp_path / f"train.{kind}"
    train.write_bytes(case.make(kind))
    settings = sweep_settings(tmp_path / "inputs", train)
    settings["task"]["files"]["kind"] = "qa"
    task = refused_or_loaded(tmp_path, settings, capfd, train, case.refused[kind])
    if task is not None:
        assert task.source_train["answer_texts"] == [row["answers"]["text"] for row in case.expected]
        assert task.source_train["context"] == [row["context"] for row in case.expected]
