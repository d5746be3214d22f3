"""Labelled task data: source-language train/validation and per-target test sets, one schema.

Whatever the source (a built-in task, a Hugging Face hub dataset, local files), a task
becomes `TaskData`: `datasets.Dataset`s with the text columns and an int64 `label` whose ids mean the
same label in every language; a token task (`kind: token`) has a list of words `tokens` and one int64
tag id per word in `tags` instead. Label names come from the source train split (its `ClassLabel`
feature, or its sorted distinct values); a validation or test set with a label the source train
split lacks is an error rather than a silently unlearnable class.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import datasets

from bistil_ray.assets.hub import offline_unless_reachable
from bistil_ray.config import FilesTaskSpec, HubTaskSpec, TaskKind, TaskSpec
from bistil_ray.data.builtin import builtin_task, check_source
from bistil_ray.data.files import check_readable_file, label_order, labelled_rows, read_table
from bistil_ray.data.qa import CONTEXT, QUESTION, qa_dataset, qa_file
from bistil_ray.data.token_files import UD_RELATIONS, ParsedSentence, parsed_row, parsed_sentences, tagged_sentences
from bistil_ray.data.ud import ud_files
from bistil_ray.errors import UserInputError

# Part of every fingerprint: bump it when a change here alters the data a spec produces.
DATA_FORMAT_VERSION = 2
# A token task's columns, whatever the source calls them.
WORDS, TAGS = "tokens", "tags"
# A parse task's heads column (1-based word numbers, 0 the root); its relation ids are in TAGS.
HEADS = "heads"


@dataclass(frozen=True)
class TaskData:
    name: str
    label_names: list[str]
    text_fields: tuple[str, ...]
    source_train: datasets.Dataset
    source_validation: datasets.Dataset
    target_test: dict[str, datasets.Dataset]
    target_validation: dict[str, datasets.Dataset] = field(default_factory=dict)
    kind: TaskKind = "sequence"

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def load_task(spec: TaskSpec, source_lang: str, target_langs: list[str]) -> TaskData:
    if source_lang in target_langs:
        raise UserInputError(f"task {spec.name}: target language '{source_lang}' is the source language")
    if spec.builtin is not None:
        return _load_builtin(spec.builtin, source_lang, target_langs)
    if spec.hub is not None:
        if spec.hub.kind == "token":
            return _load_hub_tokens(spec.hub, spec.name, source_lang, target_langs)
        if spec.hub.kind == "parse":
            return _load_hub_parsed(spec.hub, spec.name, source_lang, target_langs)
        if spec.hub.kind == "qa":
            return _load_hub_qa(spec.hub, spec.name, source_lang, target_langs)
        return _load_hub(spec.hub, spec.name, source_lang, target_langs)
    files = local_files(spec, source_lang, target_langs)
    if files.kind == "token":
        return _load_token_files(files, spec.name, target_langs)
    if files.kind == "parse":
        return _load_parsed_files(files, spec.name, target_langs)
    if files.kind == "qa":
        return _load_qa_files(files, spec.name, target_langs)
    return _load_files(files, spec.name, target_langs)


def local_files(spec: TaskSpec, source_lang: str, target_langs: list[str]) -> FilesTaskSpec | None:
    """The labelled files a files or UD task reads for these languages (None for other sources)."""
    if spec.ud is not None:
        return ud_files(spec.ud, source_lang, target_langs)
    return spec.files


def _split_identity(spec: TaskSpec, lang: str, splits: list[str | None], files: list[Path | None]) -> dict[str, Any]:
    """What determines some of a task's splits in `lang`: the built-in data, the hub dataset's
    splits, or the local files' content."""
    if spec.builtin is not None:
        return {"builtin": spec.builtin, "data": builtin_task(spec.builtin).data_digest()}
    task = spec.hub or spec.files or spec.ud
    columns = [*task.text_fields, task.label_field, *([task.head_field] if task.kind == "parse" else [])]
    identity: dict[str, Any] = {"columns": columns, "kind": task.kind}
    if spec.hub is not None:
        identity.update(hub=spec.hub.path_for(lang), config=spec.hub.config_for(lang), revision=spec.hub.revision, splits=splits)
    else:
        identity["files"] = [file_digest(path) if path is not None else None for path in files]
    return identity


def fingerprint_task(spec: TaskSpec, source_lang: str) -> str:
    """A short hash of everything that determines the source-language data (not the targets), so
    that a task teacher trained on it is reused for every target language."""
    hub, files = spec.hub, local_files(spec, source_lang, [])
    identity = _split_identity(
        spec, source_lang,
        [hub.train_split, hub.validation_split] if hub else [],
        [files.train, files.validation] if files else [],
    )  # fmt: skip
    if hub is not None:
        identity["max_train_examples"] = hub.max_train_examples
    return stable_digest({"task": identity, "source_lang": source_lang})


def fingerprint_target(spec: TaskSpec, source_lang: str, target_lang: str) -> str:
    """A short hash of the target language's evaluation data (test and validation sets), with the
    source data's: what the task teacher's scores on the pair depend on besides the teacher."""
    hub, files = spec.hub, local_files(spec, source_lang, [target_lang])
    identity = _split_identity(
        spec, target_lang,
        [hub.test_split, hub.target_validation_split] if hub else [],
        [files.test[target_lang], files.target_validation.get(target_lang)] if files else [],
    )  # fmt: skip
    return stable_digest({"target": identity, "lang": target_lang, "source": fingerprint_task(spec, source_lang)})


def stable_digest(value: Any) -> str:
    """A short hash of JSON-able `value`, stable across processes and machines."""
    payload = json.dumps({"format": DATA_FORMAT_VERSION, "value": value}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def file_digest(path: Path) -> str:
    check_readable_file(path)
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- the built-in task ---------------------------------------------------------------------------


def _labelled_dataset(examples) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"text": [example.text for example in examples], "label": [example.label for example in examples]},
        features=datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("int64")}),
    )


def _load_builtin(name: str, source_lang: str, target_langs: list[str]) -> TaskData:
    task = builtin_task(name)
    check_source(name, source_lang)
    train, validation = task.source_splits()
    splits = {lang: task.target_splits(lang) for lang in target_langs}
    return TaskData(
        name=name,
        label_names=task.label_names(),
        text_fields=("text",),
        source_train=_labelled_dataset(train),
        source_validation=_labelled_dataset(validation),
        target_test={lang: _labelled_dataset(test) for lang, (test, _) in splits.items()},
        target_validation={lang: _labelled_dataset(split) for lang, (_, split) in splits.items() if split},
    )


# --- hub datasets (one config per language, XNLI style) ------------------------------------------


def _check_each_language_has_a_config(spec: HubTaskSpec, langs: list[str]) -> None:
    if not spec.names_each_language(langs):
        missing = [lang for lang in langs if lang not in spec.configs]
        raise UserInputError(
            f"task.hub.config: must contain '{{lang}}' so that each language loads its own data (got "
            f"{spec.config!r}), or task.hub.configs must name a config for '{missing[0]}'"
        )


def _load_hub(spec: HubTaskSpec, name: str, source_lang: str, target_langs: list[str]) -> TaskData:
    _check_each_language_has_a_config(spec, [source_lang, *target_langs])

    def where(lang: str, split: str) -> str:
        return f"{spec.path_for(lang)} [{spec.config_for(lang)}] {split}"

    train = _load_hub_split(spec, source_lang, spec.train_split)
    if spec.max_train_examples is not None and len(train) > spec.max_train_examples:
        # Shuffled first: hub splits are often sorted by label, and a prefix would miss classes.
        train = train.shuffle(seed=0).select(range(spec.max_train_examples))
    label_names = _label_names(train, spec.label_field, where(source_lang, spec.train_split))

    def to_schema(dataset: datasets.Dataset, lang: str, split: str) -> datasets.Dataset:
        return _to_task_schema(dataset, spec.text_fields, spec.label_field, label_names, where(lang, split))

    def load(lang: str, split: str) -> datasets.Dataset:
        return to_schema(_load_hub_split(spec, lang, split), lang, split)

    return TaskData(
        name=name,
        label_names=label_names,
        text_fields=tuple(spec.text_fields),
        source_train=to_schema(train, source_lang, spec.train_split),
        source_validation=load(source_lang, spec.validation_split),
        target_test={lang: load(lang, spec.test_split) for lang in target_langs},
        target_validation={
            lang: load(lang, spec.target_validation_split)
            for lang in target_langs
            if spec.target_validation_split is not None
        },
    )


def _load_hub_split(spec: HubTaskSpec, lang: str, split: str) -> datasets.Dataset:
    return load_hub_dataset(
        spec.path_for(lang),
        spec.config_for(lang),
        split=split,
        revision=spec.revision,
        trust_remote_code=spec.trust_remote_code,
        where="task.hub",
    )


def load_hub_dataset(
    path: str,
    config: str | None,
    *,
    split: str,
    revision: str | None,
    trust_remote_code: bool,
    where: str,
    streaming: bool = False,
) -> datasets.Dataset | datasets.IterableDataset:
    """`datasets.load_dataset`, with a missing dataset, config or split as a UserInputError."""
    offline_unless_reachable()
    remote_code = {"trust_remote_code": True} if trust_remote_code else {}
    try:
        return datasets.load_dataset(
            path, config, split=split, revision=revision, streaming=streaming, **remote_code
        )
    except (FileNotFoundError, ValueError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserInputError(f"{where}: cannot load {path} [{config}] split {split!r}: {message}") from None


# --- local files ---------------------------------------------------------------------------------


def _load_files(spec: FilesTaskSpec, name: str, target_langs: list[str]) -> TaskData:
    missing = [lang for lang in target_langs if lang not in spec.test]
    if missing:
        raise UserInputError(f"task.files.test: no test file for language '{missing[0]}'")
    train = _read_labelled_file(spec.train, spec.text_fields, spec.label_field)
    label_names = label_order({label for _, label in train})
    label_id = {label: index for index, label in enumerate(label_names)}

    def to_schema(path: Path, rows: list[tuple[list[str], str]] | None = None) -> datasets.Dataset:
        rows = _read_labelled_file(path, spec.text_fields, spec.label_field) if rows is None else rows
        unknown = sorted({label for _, label in rows} - label_id.keys())
        if unknown:
            raise UserInputError(f"{path}: labels not in the source train split: {', '.join(unknown)}")
        columns = {field: [texts[index] for texts, _ in rows] for index, field in enumerate(spec.text_fields)}
        return datasets.Dataset.from_dict(
            {**columns, "label": [label_id[label] for _, label in rows]},
            features=_task_features(spec.text_fields),
        )

    return TaskData(
        name=name,
        label_names=label_names,
        text_fields=tuple(spec.text_fields),
        source_train=to_schema(spec.train, train),
        source_validation=to_schema(spec.validation),
        target_test={lang: to_schema(spec.test[lang]) for lang in target_langs},
        target_validation={
            lang: to_schema(spec.target_validation[lang])
            for lang in target_langs
            if lang in spec.target_validation
        },
    )


def _read_labelled_file(path: Path, text_fields: list[str], label_field: str) -> list[tuple[list[str], str]]:
    """(texts, label name) for every row of a labelled file, each value checked."""
    return list(labelled_rows(path, read_table(path), text_fields, label_field))


def _task_features(text_fields: list[str]) -> datasets.Features:
    return datasets.Features(
        {**{column: datasets.Value("string") for column in text_fields}, "label": datasets.Value("int64")}
    )


# --- token tasks (one tag per word) --------------------------------------------------------------


def _token_features() -> datasets.Features:
    return datasets.Features({WORDS: datasets.Sequence(datasets.Value("string")), TAGS: datasets.Sequence(datasets.Value("int64"))})


def _token_dataset(sentences: list[tuple[list[str], list[str]]], label_names: list[str], where: str) -> datasets.Dataset:
    """Words and tag names -> the token schema, tag ids of the source train split's tag set."""
    tag_id = {name: index for index, name in enumerate(label_names)}
    unknown = sorted({tag for _, tags in sentences for tag in tags} - tag_id.keys())
    if unknown:
        raise UserInputError(f"{where}: tags not in the source train split: {', '.join(unknown[:10])}")
    return datasets.Dataset.from_dict(
        {WORDS: [words for words, _ in sentences], TAGS: [[tag_id[tag] for tag in tags] for _, tags in sentences]},
        features=_token_features(),
    )


def _load_token_files(spec: FilesTaskSpec, name: str, target_langs: list[str]) -> TaskData:
    missing = [lang for lang in target_langs if lang not in spec.test]
    if missing:
        raise UserInputError(f"task.files.test: no test file for language '{missing[0]}'")
    words, tags = spec.text_fields[0], spec.label_field
    train = tagged_sentences(spec.train, words, tags)
    label_names = label_order({tag for _, sentence_tags in train for tag in sentence_tags})

    def load(path: Path) -> datasets.Dataset:
        return _token_dataset(tagged_sentences(path, words, tags), label_names, str(path))

    return TaskData(
        name=name,
        label_names=label_names,
        text_fields=(WORDS,),
        source_train=_token_dataset(train, label_names, str(spec.train)),
        source_validation=load(spec.validation),
        target_test={lang: load(spec.test[lang]) for lang in target_langs},
        target_validation={lang: load(spec.target_validation[lang]) for lang in target_langs if lang in spec.target_validation},
        kind="token",
    )


def _hub_sentences(dataset: datasets.Dataset, spec: HubTaskSpec, where: str) -> list[tuple[list[str], list[str]]]:
    """(words, tag names) per row of a hub split with a words column and a tags column (`Sequence`
    of `ClassLabel`, as WikiANN's `ner_tags`, or of tag names)."""
    words_field, tags_field = spec.text_fields[0], spec.label_field
    _require_columns(dataset, [words_field, tags_field], where)
    if len(dataset) == 0:
        raise UserInputError(f"{where}: no rows")
    feature = dataset.features[tags_field]
    inner = getattr(feature, "feature", None)
    if inner is None and isinstance(feature, list) and feature:
        inner = feature[0]
    name_of = _label_namer(inner, where)
    sentences = []
    for number, (words, tags) in enumerate(zip(dataset[words_field], dataset[tags_field]), start=1):
        if not isinstance(words, list) or not isinstance(tags, list) or len(words) != len(tags) or not words:
            raise UserInputError(f"{where}: row {number}: '{words_field}' and '{tags_field}' must be lists of the same non-zero length")
        sentences.append(([str(word) for word in words], [name_of(tag) for tag in tags]))
    return sentences


def _load_hub_tokens(spec: HubTaskSpec, name: str, source_lang: str, target_langs: list[str]) -> TaskData:
    _check_each_language_has_a_config(spec, [source_lang, *target_langs])

    def where(lang: str, split: str) -> str:
        return f"{spec.path_for(lang)} [{spec.config_for(lang)}] {split}"

    train_split = _load_hub_split(spec, source_lang, spec.train_split)
    if spec.max_train_examples is not None and len(train_split) > spec.max_train_examples:
        train_split = train_split.shuffle(seed=0).select(range(spec.max_train_examples))
    train = _hub_sentences(train_split, spec, where(source_lang, spec.train_split))
    feature = train_split.features[spec.label_field]
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.ClassLabel):
        label_names = list(inner.names)
    else:
        label_names = label_order({tag for _, tags in train for tag in tags})

    def load(lang: str, split: str) -> datasets.Dataset:
        sentences = _hub_sentences(_load_hub_split(spec, lang, split), spec, where(lang, split))
        return _token_dataset(sentences, label_names, where(lang, split))

    return TaskData(
        name=name,
        label_names=label_names,
        text_fields=(WORDS,),
        source_train=_token_dataset(train, label_names, where(source_lang, spec.train_split)),
        source_validation=load(source_lang, spec.validation_split),
        target_test={lang: load(lang, spec.test_split) for lang in target_langs},
        target_validation={lang: load(lang, spec.target_validation_split) for lang in target_langs if spec.target_validation_split},
        kind="token",
    )


# --- parse tasks (each word's head and relation) ---------------------------------------------------


def _parsed_dataset(sentences: list[ParsedSentence]) -> datasets.Dataset:
    """Words, heads and universal relations -> the parse schema, relation ids in UD_RELATIONS' order."""
    relation_id = {name: index for index, name in enumerate(UD_RELATIONS)}
    features = datasets.Features({WORDS: datasets.Sequence(datasets.Value("string")), HEADS: datasets.Sequence(datasets.Value("int64")),
                                  TAGS: datasets.Sequence(datasets.Value("int64"))})  # fmt: skip
    return datasets.Dataset.from_dict(
        {WORDS: [words for words, _, _ in sentences], HEADS: [heads for _, heads, _ in sentences],
         TAGS: [[relation_id[name] for name in relations] for _, _, relations in sentences]},
        features=features,
    )  # fmt: skip


def _load_parsed_files(spec: FilesTaskSpec, name: str, target_langs: list[str]) -> TaskData:
    missing = [lang for lang in target_langs if lang not in spec.test]
    if missing:
        raise UserInputError(f"task.files.test: no test file for language '{missing[0]}'")

    def load(path: Path) -> datasets.Dataset:
        return _parsed_dataset(parsed_sentences(path, spec.text_fields[0], spec.head_field, spec.label_field))

    return TaskData(
        name=name,
        label_names=list(UD_RELATIONS),
        text_fields=(WORDS,),
        source_train=load(spec.train),
        source_validation=load(spec.validation),
        target_test={lang: load(spec.test[lang]) for lang in target_langs},
        target_validation={lang: load(spec.target_validation[lang]) for lang in target_langs if lang in spec.target_validation},
        kind="parse",
    )


def _load_hub_parsed(spec: HubTaskSpec, name: str, source_lang: str, target_langs: list[str]) -> TaskData:
    """A hub dataset of UD's schema (universal_dependencies: `tokens`, `head` as strings, `deprel`)."""
    _check_each_language_has_a_config(spec, [source_lang, *target_langs])
    columns = [spec.text_fields[0], spec.head_field, spec.label_field]

    def load(lang: str, split: str, limit: int | None = None) -> datasets.Dataset:
        where = f"{spec.path_for(lang)} [{spec.config_for(lang)}] {split}"
        rows = _load_hub_split(spec, lang, split)
        _require_columns(rows, columns, where)
        if limit is not None and len(rows) > limit:
            rows = rows.shuffle(seed=0).select(range(limit))
        sentences = [parsed_row(where, number, *values)
                     for number, values in enumerate(zip(*(rows[column] for column in columns)), start=1)]  # fmt: skip
        if not sentences:
            raise UserInputError(f"{where}: no rows")
        return _parsed_dataset(sentences)

    return TaskData(
        name=name,
        label_names=list(UD_RELATIONS),
        text_fields=(WORDS,),
        source_train=load(source_lang, spec.train_split, spec.max_train_examples),
        source_validation=load(source_lang, spec.validation_split),
        target_test={lang: load(lang, spec.test_split) for lang in target_langs},
        target_validation={lang: load(lang, spec.target_validation_split) for lang in target_langs if spec.target_validation_split},
        kind="parse",
    )


# --- extractive question answering (SQuAD's schema) ---------------------------------------------------

# A QA model's two outputs per position: where the answer starts and where it ends.
QA_LABELS = ["start", "end"]


def _load_qa_files(spec: FilesTaskSpec, name: str, target_langs: list[str]) -> TaskData:
    missing = [lang for lang in target_langs if lang not in spec.test]
    if missing:
        raise UserInputError(f"task.files.test: no test file for language '{missing[0]}'")

    def load(path: Path) -> datasets.Dataset:
        return qa_file(path, *spec.text_fields, spec.label_field)

    return TaskData(
        name=name, label_names=list(QA_LABELS), text_fields=(QUESTION, CONTEXT), source_train=load(spec.train),
        source_validation=load(spec.validation), target_test={lang: load(spec.test[lang]) for lang in target_langs},
        target_validation={lang: load(spec.target_validation[lang]) for lang in target_langs if lang in spec.target_validation},
        kind="qa",
    )  # fmt: skip


def _load_hub_qa(spec: HubTaskSpec, name: str, source_lang: str, target_langs: list[str]) -> TaskData:
    """SQuAD for English, XQuAD or MLQA per target (their `answers` are SQuAD's)."""
    _check_each_language_has_a_config(spec, [source_lang, *target_langs])

    def load(lang: str, split: str, limit: int | None = None) -> datasets.Dataset:
        rows = _load_hub_split(spec, lang, split)
        if limit is not None and len(rows) > limit:
            rows = rows.shuffle(seed=0).select(range(limit))
        return qa_dataset(iter(rows), f"{spec.path_for(lang)} [{spec.config_for(lang)}] {split}", *spec.text_fields, spec.label_field)

    return TaskData(
        name=name, label_names=list(QA_LABELS), text_fields=(QUESTION, CONTEXT),
        source_train=load(source_lang, spec.train_split, spec.max_train_examples),
        source_validation=load(source_lang, spec.validation_split),
        target_test={lang: load(lang, spec.test_split) for lang in target_langs},
        target_validation={lang: load(lang, spec.target_validation_split) for lang in target_langs if spec.target_validation_split},
        kind="qa",
    )  # fmt: skip


# --- one schema for every source -----------------------------------------------------------------


def _label_namer(feature: Any, where: str) -> Callable[[Any], str]:
    if not isinstance(feature, datasets.ClassLabel):
        return str

    def name_of(value: Any) -> str:
        if not isinstance(value, int) or not 0 <= value < feature.num_classes:
            raise UserInputError(
                f"{where}: label {value!r} is not one of the {feature.num_classes} class ids"
            )
        return feature.int2str(value)

    return name_of


def _require_columns(dataset: datasets.Dataset, columns: list[str], where: str) -> None:
    for column in columns:
        if column not in dataset.column_names:
            columns = ", ".join(dataset.column_names)
            raise UserInputError(f"{where}: no column '{column}' (columns: {columns})")


def _label_names(train: datasets.Dataset, label_field: str, where: str) -> list[str]:
    _require_columns(train, [label_field], where)
    feature = train.features[label_field]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    return label_order({str(value) for value in train.unique(label_field) if value is not None})


def _to_task_schema(
    dataset: datasets.Dataset,
    text_fields: list[str],
    label_field: str,
    label_names: list[str],
    where: str,
) -> datasets.Dataset:
    """Select `text_fields` and the label column; map labels (by name) to the source label ids."""
    _require_columns(dataset, [*text_fields, label_field], where)
    if len(dataset) == 0:
        raise UserInputError(f"{where}: no rows")
    name_of = _label_namer(dataset.features[label_field], where)
    values = dataset.unique(label_field)
    if None in values:
        raise UserInputError(f"{where}: some rows have no '{label_field}'")
    label_id = {name: index for index, name in enumerate(label_names)}
    unknown = sorted({name_of(value) for value in values} - label_id.keys())
    if unknown:
        raise UserInputError(f"{where}: labels not in the source train split: {', '.join(unknown)}")
    id_of_value = {value: label_id[name_of(value)] for value in values}
    for column in text_fields:
        kind = dataset.features[column]
        if not (isinstance(kind, datasets.Value) and kind.dtype in ("string", "large_string")):
            raise UserInputError(f"{where}: column '{column}' holds {kind}, not text")
    features = _task_features(text_fields)
    return dataset.select_columns([*text_fields, label_field]).map(
        lambda batch: {"label": [id_of_value[value] for value in batch[label_field]]},
        batched=True,
        remove_columns=[] if label_field == "label" else [label_field],
        features=features,
    )
