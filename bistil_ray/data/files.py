"""Reading files a user names: what the path is, its text, and labelled tables as rows.

Every problem is a `UserInputError` of one line that names the file, and the line, row or column
where one is known. The tables are read with the standard library's `json` and `csv` and with
pyarrow's Parquet reader into plain rows, then checked value by value: a type inferred wrongly by a
columnar reader (a column of nulls, numbers mixed with text) would otherwise surface as a pyarrow
traceback far from the file that caused it.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import stat
import sys
from pathlib import Path
from typing import Any, Iterator

from bistil_ray.errors import UserInputError

TABLE_FORMATS = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


def check_readable_file(path: Path) -> None:
    """`path` is a regular file this process can open; else the reason, naming the path."""
    path = Path(path)
    try:
        status = path.stat()
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such file") from None
    except ValueError:  # a NUL byte in the path: no file can have that name
        raise UserInputError(f"{path}: no such file") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UserInputError(f"{path}: a loop of symbolic links") from None
        raise UserInputError(f"{path}: not readable ({error.strerror})") from None
    if stat.S_ISDIR(status.st_mode):
        raise UserInputError(f"{path}: is a directory, expected a file")
    if not stat.S_ISREG(status.st_mode):
        raise UserInputError(f"{path}: not a regular file (a device, pipe or socket)")
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise UserInputError(f"{path}: not readable ({error.strerror})") from None


def read_text(path: Path) -> str:
    """The whole file as text: UTF-8, a leading byte-order mark dropped, no NUL bytes."""
    check_readable_file(path)
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise UserInputError(f"{path}: not UTF-8 text (line {line})") from None
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise UserInputError(f"{path}: NUL bytes at line {line}: not UTF-8 text (UTF-16?); save it as UTF-8")
    return text


def read_table(path: Path) -> list[dict[str, Any]]:
    """The rows of a jsonl, json, csv, tsv or parquet file (chosen by extension), each a dict."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise UserInputError(f"{path}: unknown extension '{path.suffix}' (use {', '.join(TABLE_FORMATS)})")
    check_readable_file(path)
    if path.stat().st_size == 0:
        raise UserInputError(f"{path}: empty file")
    if suffix == ".parquet":
        rows = _parquet_rows(path)
    elif suffix in (".csv", ".tsv"):
        rows = _delimited_rows(path, "," if suffix == ".csv" else "\t")
    else:
        rows = _json_rows(path, read_text(path), lines=suffix == ".jsonl")
    if not rows:
        raise UserInputError(f"{path}: no rows")
    return rows


def _first_repeated(names: list[str]) -> str | None:
    return next((name for index, name in enumerate(names) if name in names[:index]), None)


class _DuplicateKey(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (json keeps the last one silently)."""
    repeated = _first_repeated([key for key, _ in pairs])
    if repeated is not None:
        raise _DuplicateKey(repeated)
    return dict(pairs)


def json_document(path: Path, text: str) -> Any:
    """One JSON document; a key given twice in an object is refused (json keeps the last silently).
    Not JSON: `json.JSONDecodeError`, for the caller to try another layout or say so."""
    try:
        return json.loads(text, object_pairs_hook=_object)
    except _DuplicateKey as repeated:
        raise UserInputError(f"{path}: key '{repeated}' appears twice in one object") from None


def _json_rows(path: Path, text: str, *, lines: bool) -> list[dict[str, Any]]:
    """JSON lines, or (`.json`) a JSON list of objects; a `.json` file of JSON lines is read too."""
    if not lines:
        try:
            document = json_document(path, text)
        except json.JSONDecodeError:
            return _json_rows(path, text, lines=True)
        if not isinstance(document, list):
            raise UserInputError(f"{path}: expected a JSON list of objects, or one object per line")
        for index, row in enumerate(document):
            if not isinstance(row, dict):
                raise UserInputError(f"{path}: item {index + 1} of the list is not an object")
        return document
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, object_pairs_hook=_object)
        except _DuplicateKey as repeated:
            raise UserInputError(f"{path}: line {number}: key '{repeated}' appears twice") from None
        except json.JSONDecodeError as error:
            raise UserInputError(f"{path}: line {number}: not valid JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise UserInputError(f"{path}: line {number}: not a JSON object")
        rows.append(row)
    return rows


def _delimited_rows(path: Path, delimiter: str) -> list[dict[str, Any]]:
    """Rows of a csv/tsv file with a header line; every value is text. Blank lines are skipped."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # default 128 KiB: a long document is a valid field
    reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter)
    header: list[str] | None = None
    rows = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = row
                repeated = _first_repeated(header)
                if repeated is not None:
                    raise UserInputError(f"{path}: column '{repeated}' appears twice in the header")
            elif len(row) != len(header):
                raise UserInputError(
                    f"{path}: line {reader.line_num}: {len(row)} fields, but the header has {len(header)}"
                )
            else:
                rows.append(dict(zip(header, row)))
    except csv.Error as error:
        raise UserInputError(f"{path}: line {reader.line_num}: not readable as {path.suffix[1:]} ({error})") from None
    return rows


def _parquet_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise UserInputError(f"{path}: not readable as Parquet ({' '.join(str(error).split())})") from None
    repeated = _first_repeated(table.column_names)
    if repeated is not None:
        raise UserInputError(f"{path}: column '{repeated}' appears twice")
    return table.to_pylist()


# --- labelled rows ---------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def text_value(path: Path, row: int, column: str, value: Any) -> str:
    """A text cell: a string, or a number written as text; anything else names the row."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if value is None or isinstance(value, str):
        raise UserInputError(f"{path}: row {row}: no text in column '{column}'")
    raise UserInputError(f"{path}: row {row}: column '{column}' holds {_kind(value)}, not text")


def label_value(path: Path, row: int, column: str, value: Any) -> str | int:
    """A label cell: a class name or a whole-number class id."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if value is None or isinstance(value, str):
        raise UserInputError(f"{path}: row {row}: no label in column '{column}'")
    raise UserInputError(f"{path}: row {row}: column '{column}' holds {_kind(value)}, not a class name or id")


def labelled_rows(
    path: Path, rows: list[dict[str, Any]], text_fields: list[str], label_field: str
) -> Iterator[tuple[list[str], str]]:
    """(texts, label name) per row. Labels are names, so that a class id written as a number in one
    file and as text in another is one class; one file mixing numbers and text is refused."""
    columns = list(rows[0])
    for column in [*text_fields, label_field]:
        if column not in columns:
            raise UserInputError(f"{path}: no column '{column}' (columns: {', '.join(columns)})")
    first_kind: tuple[int, type] | None = None
    for number, row in enumerate(rows, start=1):
        missing = [column for column in [*text_fields, label_field] if column not in row]
        if missing:
            raise UserInputError(f"{path}: row {number}: no column '{missing[0]}'")
        label = label_value(path, number, label_field, row[label_field])
        if first_kind is None:
            first_kind = (number, type(label))
        elif type(label) is not first_kind[1]:
            raise UserInputError(
                f"{path}: column '{label_field}' mixes numbers and text (row {first_kind[0]}: "
                f"{rows[first_kind[0] - 1][label_field]!r}, row {number}: {row[label_field]!r})"
            )
        yield [text_value(path, number, column, row[column]) for column in text_fields], str(label)


def label_order(names: set[str]) -> list[str]:
    """Label names sorted so that ids stay put: whole numbers by value (2 before 10), then text."""

    def key(name: str) -> tuple[int, int, str]:
        stripped = name.lstrip("-")
        return (0, int(name), "") if stripped.isdigit() and stripped.isascii() else (1, 0, name)

    return sorted(names, key=key)


def within(path: Path, lines: Iterator[str]) -> Iterator[str]:
    """The lines of a text file, refusing NUL bytes (a UTF-16 file of ASCII text decodes as UTF-8)."""
    for number, line in enumerate(lines, start=1):
        if "\0" in line:
            raise UserInputError(f"{path}: NUL bytes at line {number}: not UTF-8 text (UTF-16?); save it as UTF-8")
        yield line
