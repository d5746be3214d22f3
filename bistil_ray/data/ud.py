"""Universal Dependencies treebanks in a local folder, named once (`task.ud.folder`).

A UD release (and `../shared/data/ud` on this project's machines) keeps each treebank in its own
folder, `UD_<Language>-<Name>/<code>-ud-<split>.conllu`. `ud_files` turns the UD spec into the
labelled CoNLL-U files of a token task, so that a UD task is read, checked and keyed exactly as
`task.files` is. The treebanks are CC BY-SA 4.0: each folder's README and LICENSE name whom to credit.
"""

from __future__ import annotations

import os
from pathlib import Path

from bistil_ray.config import FilesTaskSpec, UDTaskSpec, expand_user
from bistil_ray.data.token_files import parse_conllu
from bistil_ray.errors import UserInputError

UD_FOLDER_ENV = "BISTIL_RAY_UD"
# Where this project's machines keep the treebanks: beside the project's own folder.
SHARED_UD_FOLDER = Path(__file__).resolve().parents[3] / "shared" / "data" / "ud"


def default_ud_folder() -> Path | None:
    """$BISTIL_RAY_UD when set, else the shared folder when it exists, else None."""
    named = os.environ.get("BISTIL_RAY_UD")  # UD_FOLDER_ENV, spelt out for the check on what reads the environment
    if named:
        return expand_user(named, f"${UD_FOLDER_ENV}")
    return SHARED_UD_FOLDER if SHARED_UD_FOLDER.is_dir() else None


def ud_folder(spec: UDTaskSpec) -> Path:
    """The folder the spec reads, absolute; a missing one is a one-line error naming where it came from."""
    if spec.folder is not None:
        folder, where = expand_user(spec.folder, "task.ud.folder"), "task.ud.folder"
    else:
        folder, where = default_ud_folder(), f"${UD_FOLDER_ENV}"
        if folder is None:
            raise UserInputError(
                f"task.ud.folder: no UD folder given (set task.ud.folder, --set task.ud.folder=DIR or "
                f"${UD_FOLDER_ENV}; {SHARED_UD_FOLDER} does not exist)"
            )
    if not folder.is_dir():
        raise UserInputError(f"{where}: {folder} is not a folder")
    return folder.resolve()


def treebank_file(folder: Path, code: str, split: str) -> Path:
    """`<code>-ud-<split>.conllu` in `folder` or one of its treebank folders: exactly one must exist."""
    name = f"{code}-ud-{split}.conllu"
    found = sorted({*folder.glob(name), *folder.glob(f"*/{name}")})
    if not found:
        raise UserInputError(f"task.ud: no {name} in {folder} or its treebank folders")
    if len(found) > 1:
        raise UserInputError(f"task.ud: {name} is in {len(found)} places under {folder}: {found[0].parent.name}, {found[1].parent.name}")
    return found[0]


def treebank_code(spec: UDTaskSpec, lang: str) -> str:
    if lang not in spec.treebanks:
        known = ", ".join(sorted(spec.treebanks))
        raise UserInputError(f"task.ud.treebanks: no treebank for language '{lang}' (known: {known}); add {lang}: <code>")
    return spec.treebanks[lang]


def ud_files(spec: UDTaskSpec, source_lang: str, target_langs: list[str]) -> FilesTaskSpec:
    """The labelled files of the source language and of each of `target_langs`, as a files task."""
    folder = ud_folder(spec)

    def file(lang: str, split: str) -> Path:
        return treebank_file(folder, treebank_code(spec, lang), split)

    return FilesTaskSpec(
        kind=spec.kind,
        label_field=spec.label_field,
        train=file(source_lang, spec.source_train_split),
        validation=file(source_lang, spec.source_validation_split),
        test={lang: file(lang, spec.target_test_split) for lang in target_langs},
        target_validation={lang: file(lang, spec.target_validation_split) for lang in target_langs},
    )


def ud_text_file(spec: UDTaskSpec, lang: str) -> Path:
    """Where a UD task's phase-1 text for `lang` comes from when `corpora` names none: its treebank's
    `text_split` (never a test split), whose `# text =` lines `raw_sentences` reads."""
    return treebank_file(ud_folder(spec), treebank_code(spec, lang), spec.text_split)


def raw_sentences(path: Path) -> list[str]:
    """Each sentence's `# text =` line (its words joined by spaces where a sentence has none)."""
    return [
        sentence.metadata.get("text") or " ".join(str(token["form"]) for token in sentence if isinstance(token["id"], int))
        for sentence in parse_conllu(path)
    ]
