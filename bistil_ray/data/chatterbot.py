"""The built-in task: topic classification of chatterbot-corpus utterances.

PyPI `chatterbot-corpus` ships `data/<language>/<topic>.yml`, each a list of conversations. Every
string in a conversation is one utterance; its label is the topic. The labels are the English topic
files, so English is the source language: its utterances are split deterministically into train and
validation. Every other language's utterances under those topics are split the same way into its
zero-shot test set (half) and its target validation set (the next TARGET_VALIDATION_FRACTION), on
which a sweep may choose settings without looking at the test set. Whatever else a language has (the
rest of those topics, topics English lacks, utterances filed under two topics) is unlabelled text for
phase 1; neither evaluation split of a language is ever part of its phase-1 text.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import chatterbot_corpus
import yaml

from bistil_ray.errors import UserInputError

SOURCE_LANGUAGE = "en"
VALIDATION_FRACTION = 0.15
TEST_FRACTION = 0.5
TARGET_VALIDATION_FRACTION = 0.15

DATA_DIR = Path(chatterbot_corpus.__file__).parent / "data"
# BaseLoader builds only str, list and dict (safe), and keeps every scalar a string: SafeLoader would
# turn a reply such as `- Yes` into True and lose the utterance.
YAML_LOADER = getattr(yaml, "CBaseLoader", yaml.BaseLoader)

# Language code (ISO 639-1; a script or variant subtag where the corpus has two forms) -> folder.
LANGUAGE_FOLDERS: dict[str, str] = {
    "bn": "bengali",
    "de": "german",
    "en": "english",
    "es": "spanish",
    "fa": "persian",
    "fr": "french",
    "he": "hebrew",
    "hi": "hindi",
    "hi-latn": "hinglish",
    "id": "indonesian",
    "it": "italian",
    "ja": "japanese",
    "ko": "korean",
    "mr": "marathi",
    "nl": "dutch",
    "or": "oriya",
    "pt": "portuguese",
    "ru": "russian",
    "sv": "swedish",
    "ta": "tamil",
    "te": "telugu",
    "th": "thai",
    "tr": "turkish",
    "uk": "ukrainian",
    "ur": "urdu",
    "yo": "yoruba",
    "zh": "chinese",
    "zh-hant": "traditionalchinese",
}

# Files whose name is not the English topic they hold: translated or misspelt names, and one
# misfiled file (telugu/conversations.yml holds greetings, as its own `categories` says).
ENGLISH_TOPIC_OF_FILE: dict[tuple[str, str], str] = {
    ("bengali", "computer"): "computers",
    ("bengali", "emotions"): "emotion",
    ("dutch", "sport"): "sports",
    ("hindi", "coversations"): "conversations",
    ("persian", "profile"): "botprofile",
    ("spanish", "IA"): "ai",
    ("spanish", "dinero"): "money",
    ("spanish", "emociones"): "emotion",
    ("spanish", "origen"): "botprofile",
    ("spanish", "perfilbot"): "botprofile",
    ("spanish", "psicologia"): "psychology",
    ("telugu", "conversations"): "greetings",
    ("thai", "greeting"): "greetings",
}


class Example(NamedTuple):
    text: str
    label: int


class LanguageText(NamedTuple):
    """One language's utterances: every distinct one, and the unambiguous ones by topic."""

    utterances: tuple[str, ...]
    by_topic: dict[str, tuple[str, ...]]


def available_languages() -> list[str]:
    return sorted(code for code, folder in LANGUAGE_FOLDERS.items() if (DATA_DIR / folder).is_dir())


def folder_of(lang: str) -> str:
    if lang not in available_languages():
        raise UserInputError(
            f"task chatterbot: no language '{lang}'; available: {', '.join(available_languages())}"
        )
    return LANGUAGE_FOLDERS[lang]


def check_language(lang: str) -> None:
    folder_of(lang)


def label_names() -> list[str]:
    return topics()


def topics() -> list[str]:
    """The label names: the English topic files, sorted, so that label ids never change."""
    return sorted(path.stem for path in (DATA_DIR / LANGUAGE_FOLDERS[SOURCE_LANGUAGE]).glob("*.yml"))


def _strings_in(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [text for item in node for text in _strings_in(item)]
    return []


def _read_utterances(path: Path) -> list[str]:
    document = yaml.load(path.read_text(encoding="utf-8"), Loader=YAML_LOADER)
    conversations = document.get("conversations", []) if isinstance(document, dict) else []
    normalised = (" ".join(text.split()) for text in _strings_in(conversations))
    return [text for text in normalised if text]


@lru_cache(maxsize=None)
def read_language(lang: str) -> LanguageText:
    folder = folder_of(lang)
    topics_of: dict[str, set[str]] = {}
    for path in sorted((DATA_DIR / folder).glob("*.yml")):
        topic = ENGLISH_TOPIC_OF_FILE.get((folder, path.stem), path.stem)
        for text in _read_utterances(path):
            topics_of.setdefault(text, set()).add(topic)
    by_topic: dict[str, list[str]] = {}
    for text, its_topics in topics_of.items():
        if len(its_topics) == 1:
            by_topic.setdefault(next(iter(its_topics)), []).append(text)
    return LanguageText(tuple(topics_of), {topic: tuple(texts) for topic, texts in by_topic.items()})


def _stable_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@lru_cache(maxsize=None)
def source_splits() -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    """English (train, validation): per topic, the VALIDATION_FRACTION of utterances with the
    smallest text hash (at least one) is validation, so both splits hold every topic and neither
    depends on file order."""
    english = read_language(SOURCE_LANGUAGE)
    train: list[Example] = []
    validation: list[Example] = []
    for label, topic in enumerate(topics()):
        texts = sorted(english.by_topic.get(topic, ()), key=_stable_hash)
        held_out = min(len(texts) - 1, max(1, round(VALIDATION_FRACTION * len(texts))))
        validation += [Example(text, label) for text in texts[:held_out]]
        train += [Example(text, label) for text in texts[held_out:]]
    return tuple(train), tuple(validation)


@lru_cache(maxsize=None)
def target_splits(lang: str) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    """A target language's (test, validation): per English topic, its utterances ordered by text
    hash; the first TEST_FRACTION (at least one) is test, the next TARGET_VALIDATION_FRACTION of the
    topic (possibly none for a topic of two or three utterances) is validation, both labelled with the
    English ids. The rest of the language is unlabelled phase-1 text: without it a target would have
    almost no phase-1 text at all."""
    language = read_language(lang)
    test: list[Example] = []
    validation: list[Example] = []
    for label, topic in enumerate(topics()):
        texts = sorted(language.by_topic.get(topic, ()), key=_stable_hash)
        if not texts:
            continue
        tested = max(1, round(TEST_FRACTION * len(texts)))
        validated = min(len(texts) - tested, round(TARGET_VALIDATION_FRACTION * len(texts)))
        test += [Example(text, label) for text in texts[:tested]]
        validation += [Example(text, label) for text in texts[tested : tested + validated]]
    return tuple(test), tuple(validation)


def test_split(lang: str) -> tuple[Example, ...]:
    return target_splits(lang)[0]


def target_validation_split(lang: str) -> tuple[Example, ...]:
    return target_splits(lang)[1]


def unlabelled_text(lang: str) -> list[str]:
    """Phase-1 text: the language's distinct utterances minus its evaluation splits (validation for
    the source; test and validation for a target), in corpus order."""
    if lang == SOURCE_LANGUAGE:
        held_out = {example.text for example in source_splits()[1]}
    else:
        held_out = {example.text for split in target_splits(lang) for example in split}
    return [text for text in read_language(lang).utterances if text not in held_out]


@lru_cache(maxsize=None)
def data_digest() -> str:
    """A hash of the installed corpus files, for content-addressed cache keys."""
    digest = hashlib.sha256()
    for path in sorted(DATA_DIR.rglob("*.yml")):
        digest.update(str(path.relative_to(DATA_DIR)).encode("utf-8") + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()
