"""The built-in offline tasks, by the name a config gives in `task.builtin`.

Each is a module with the same functions (`BuiltinTask`): English-labelled source splits, per target
language a test and a validation split with the same label ids, and unlabelled phase-1 text that
never holds a language's evaluation splits.
"""

from __future__ import annotations

from types import ModuleType
from typing import Protocol, Sequence, cast

from bistil_ray.data import chatterbot, quran
from bistil_ray.errors import UserInputError


class LabelledText(Protocol):
    text: str
    label: int


class BuiltinTask(Protocol):
    SOURCE_LANGUAGE: str

    def available_languages(self) -> list[str]: ...
    def check_language(self, lang: str) -> None: ...
    def label_names(self) -> list[str]: ...
    def source_splits(self) -> tuple[Sequence[LabelledText], Sequence[LabelledText]]: ...
    def target_splits(self, lang: str) -> tuple[Sequence[LabelledText], Sequence[LabelledText]]: ...
    def unlabelled_text(self, lang: str) -> list[str]: ...
    def data_digest(self) -> str: ...


MODULES: dict[str, ModuleType] = {"chatterbot": chatterbot, "quran": quran}


def builtin_task(name: str) -> BuiltinTask:
    return cast(BuiltinTask, MODULES[name])


def check_source(name: str, lang: str) -> None:
    """A built-in task's labels are in its source language: the only one it can train on."""
    task = builtin_task(name)
    task.check_language(lang)
    if lang != task.SOURCE_LANGUAGE:
        raise UserInputError(
            f"task {name}: source_lang must be '{task.SOURCE_LANGUAGE}' (the labels are read on that "
            f"language's text); got '{lang}'"
        )
