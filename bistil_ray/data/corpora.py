"""Unlabelled phase-1 text, one language at a time.

A language's text comes from `corpora.<lang>` when the config names it (a plain-text file with one
sentence per line, a hub dataset's text column, or translated text from Debian's packages); otherwise a built-in task supplies
the utterances of that language that none of its evaluation splits use, and a UD task the raw text
of the language's treebank split `task.ud.text_split`.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator

from bistil_ray.config import CorpusSpec, HubCorpusSpec, TaskSpec, language_config
from bistil_ray.data.builtin import builtin_task
from bistil_ray.data.files import check_readable_file, within
from bistil_ray.data.tasks import file_digest, load_hub_dataset, stable_digest
from bistil_ray.data.debian_text import debian_corpus
from bistil_ray.data.ud import raw_sentences, ud_text_file
from bistil_ray.errors import UserInputError


def load_corpus(
    task: TaskSpec, corpora: dict[str, CorpusSpec], lang: str, *, max_sentences: int | None = None
) -> list[str]:
    """Non-blank sentences of `lang`, in corpus order, at most `max_sentences` (and at most the
    spec's own `max_sentences`)."""
    if lang in corpora:
        spec = corpora[lang]
        limit = min((n for n in (spec.max_sentences, max_sentences) if n is not None), default=None)
        if spec.file is not None:
            sentences, where = _read_text_file(Path(spec.file), limit), str(spec.file)
        elif spec.debian is not None:
            path = debian_corpus(spec.debian.language or lang)
            sentences, where = _read_text_file(path, limit), str(path)
        else:
            sentences = _read_hub_corpus(spec.hub, lang, limit)
            where = f"corpora.{lang}.hub ({spec.hub.path})"
        if not sentences:
            raise UserInputError(f"{where}: no sentences")
        return sentences
    if task.ud is not None:
        return raw_sentences(ud_text_file(task.ud, lang))[:max_sentences]
    if task.builtin is not None:
        sentences = builtin_task(task.builtin).unlabelled_text(lang)[:max_sentences]
        if not sentences:
            raise UserInputError(
                f"corpora.{lang}: the built-in {task.builtin} task has no text in '{lang}' outside its test "
                f"set; add corpora.{lang}"
            )
        return sentences
    raise UserInputError(f"corpora.{lang}: no phase-1 text for language '{lang}'; add corpora.{lang}")


def fingerprint_corpus(task: TaskSpec, corpora: dict[str, CorpusSpec], lang: str) -> str:
    """A short hash of what `load_corpus` reads for `lang` (a caller's `max_sentences` is not part
    of it: key on that separately)."""
    if lang in corpora:
        spec = corpora[lang]
        if spec.file is not None:
            source: dict[str, Any] = {"file": file_digest(Path(spec.file))}
        elif spec.debian is not None:
            source = {"debian": file_digest(debian_corpus(spec.debian.language or lang))}
        else:
            hub = spec.hub
            source = {
                "hub": hub.path,
                "config": language_config(hub.config, lang),
                "split": hub.split,
                "text_field": hub.text_field,
                "revision": hub.revision,
            }
        return stable_digest({"corpus": source, "max_sentences": spec.max_sentences, "lang": lang})
    if task.ud is not None:
        return stable_digest({"corpus": {"ud_text": file_digest(ud_text_file(task.ud, lang))}, "lang": lang})
    if task.builtin is not None:
        builtin = builtin_task(task.builtin)
        builtin.check_language(lang)
        source = {"builtin": task.builtin, "data": builtin.data_digest()}
        return stable_digest({"corpus": source, "lang": lang})
    raise UserInputError(f"corpora.{lang}: no phase-1 text for language '{lang}'; add corpora.{lang}")


def _non_blank(lines: Iterable[str]) -> Iterator[str]:
    return (line.strip() for line in lines if line.strip())


def _read_text_file(path: Path, limit: int | None) -> list[str]:
    check_readable_file(path)
    try:
        # utf-8-sig: a byte-order mark some editors write is not part of the first sentence.
        with path.open(encoding="utf-8-sig") as handle:
            return list(islice(_non_blank(within(path, handle)), limit))
    except UnicodeDecodeError:
        raise UserInputError(f"{path}: not UTF-8 text") from None


def _read_hub_corpus(spec: HubCorpusSpec, lang: str, limit: int | None) -> list[str]:
    dataset = load_hub_dataset(
        spec.path,
        language_config(spec.config, lang),
        split=spec.split,
        revision=spec.revision,
        trust_remote_code=spec.trust_remote_code,
        where=f"corpora.{lang}.hub",
        streaming=spec.streaming,
    )

    def texts() -> Iterator[str]:
        for row in dataset:
            if spec.text_field not in row:
                raise UserInputError(
                    f"corpora.{lang}.hub.text_field: no column '{spec.text_field}' in {spec.path} "
                    f"(columns: {', '.join(row)})"
                )
            # A row may hold a whole document; its lines are the sentences, as in a text file.
            yield from str(row[spec.text_field] or "").splitlines()

    return list(islice(_non_blank(texts()), limit))
