"""Task data and phase-1 corpora: the built-in chatterbot and quran tasks, hub datasets, local files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import datasets
import pytest
import yaml

from bistil_ray.config import CorpusSpec, FilesTaskSpec, HubCorpusSpec, HubTaskSpec, TaskSpec
from bistil_ray.data import chatterbot, quran
from bistil_ray.data.corpora import fingerprint_corpus, load_corpus
from bistil_ray.data.tasks import fingerprint_task, load_task
from bistil_ray.errors import UserInputError

CHATTERBOT = TaskSpec(builtin="chatterbot")
USABLE_TARGETS = ["zh", "ja", "it", "es", "de"]
NLI_LABELS = ["entailment", "neutral", "contradiction"]


@pytest.fixture(autouse=True)
def private_datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets-cache")


def write_table(path: Path, rows: list[dict]) -> Path:
    """Rows as jsonl, csv, tsv or parquet, by the extension of `path`."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    elif path.suffix in (".csv", ".tsv"):
        with path.open("w", encoding="utf-8", newline="") as handle:
            delimiter = "," if path.suffix == ".csv" else "\t"
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
            writer.writeheader()
            writer.writerows(rows)
    else:
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path


def nli_rows(lang: str, count: int = 6) -> list[dict]:
    return [
        {"premise": f"{lang} premise {i}", "hypothesis": f"{lang} hypothesis {i}", "label": i % 3}
        for i in range(count)
    ]


def write_dataset_card(root: Path, files_of_config: dict[str, dict[str, str]]) -> None:
    """A README.md whose YAML header declares the configs, as hub datasets without scripts do."""
    configs = [
        {"config_name": name, "data_files": [{"split": split, "path": path} for split, path in files.items()]}
        for name, files in files_of_config.items()
    ]
    (root / "README.md").write_text("---\n" + yaml.safe_dump({"configs": configs}) + "---\n", encoding="utf-8")


@pytest.fixture
def xnli_dir(tmp_path: Path) -> Path:
    """An XNLI-shaped dataset (one config per language, ClassLabel labels) that
    `load_dataset(<dir>, <lang>)` loads offline through the same path as a hub dataset."""
    root = tmp_path / "xnli"
    text = datasets.Value("string")
    features = datasets.Features({"premise": text, "hypothesis": text, "label": datasets.ClassLabel(names=NLI_LABELS)})
    sizes = {"train": 12, "validation": 6, "test": 9}
    for lang in ["en", "de", "fr"]:
        (root / lang).mkdir(parents=True)
        for split, count in sizes.items():
            rows = datasets.Dataset.from_list(nli_rows(lang, count), features=features)
            rows.to_parquet(str(root / lang / f"{split}.parquet"))
    write_dataset_card(root, {lang: {split: f"{lang}/{split}.parquet" for split in sizes} for lang in ["en", "de", "fr"]})
    return root


def files_task(tmp_path: Path, suffix: str, test_rows: list[dict] | None = None) -> TaskSpec:
    rows = [{"text": f"sentence {i}", "label": ["sports", "food", "money"][i % 3]} for i in range(9)]
    return TaskSpec(
        files=FilesTaskSpec(
            train=write_table(tmp_path / f"train{suffix}", rows),
            validation=write_table(tmp_path / f"validation{suffix}", rows[:3]),
            test={"de": write_table(tmp_path / f"test_de{suffix}", test_rows or rows[3:])},
        )
    )


def user_error(call, *args, **kwargs) -> str:
    with pytest.raises(UserInputError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- the built-in chatterbot task ----------------------------------------------------------------


def test_chatterbot_splits_are_deterministic():
    first = load_task(CHATTERBOT, "en", USABLE_TARGETS)
    chatterbot.read_language.cache_clear()
    chatterbot.source_splits.cache_clear()
    second = load_task(CHATTERBOT, "en", USABLE_TARGETS)
    assert first.source_train.to_dict() == second.source_train.to_dict()
    assert first.source_validation.to_dict() == second.source_validation.to_dict()
    for lang in USABLE_TARGETS:
        assert first.target_test[lang].to_dict() == second.target_test[lang].to_dict()


def test_chatterbot_english_train_and_validation_are_disjoint_and_hold_every_label():
    task = load_task(CHATTERBOT, "en", [])
    train, validation = task.source_train, task.source_validation
    assert task.label_names == sorted(task.label_names) and "tech_support" in task.label_names
    assert not set(train["text"]) & set(validation["text"])
    assert set(train["label"]) == set(validation["label"]) == set(range(task.num_labels))
    assert 0.1 < len(validation) / (len(train) + len(validation)) < 0.2
    assert train.features["label"] == datasets.Value("int64")


def test_chatterbot_label_ids_are_shared_across_languages():
    task = load_task(CHATTERBOT, "en", ["it", "es"])
    for lang, test in task.target_test.items():
        by_topic = chatterbot.read_language(lang).by_topic
        for text, label in zip(test["text"], test["label"]):
            assert text in by_topic[task.label_names[label]]
    # italian/ai.yml and spanish/IA.yml both hold the English topic "ai"; spanish/dinero.yml is "money".
    assert "Cos'è l'intelligenza artificiale?" in chatterbot.read_language("it").by_topic["ai"]
    assert "Qué es la IA" in chatterbot.read_language("es").by_topic["ai"]
    assert len(chatterbot.read_language("es").by_topic["money"]) > 20


@pytest.mark.parametrize("lang", USABLE_TARGETS)
def test_chatterbot_target_test_sets_are_usable(lang: str):
    test = load_task(CHATTERBOT, "en", [lang]).target_test[lang]
    labels = set(test["label"])
    assert len(test) >= 100 and len(labels) >= 5
    assert labels <= set(range(len(chatterbot.topics())))
    assert len(set(test["text"])) == len(test)


def test_chatterbot_drops_utterances_filed_under_two_topics():
    english = chatterbot.read_language("en")
    by_topic = [set(texts) for texts in english.by_topic.values()]
    assert all(not a & b for i, a in enumerate(by_topic) for b in by_topic[i + 1 :])
    assert len(english.utterances) > sum(map(len, by_topic))


def test_chatterbot_unknown_language():
    message = user_error(load_task, CHATTERBOT, "en", ["xx"])
    assert message.startswith("task chatterbot: no language 'xx'; available: ") and "zh" in message


def test_chatterbot_source_must_be_english():
    assert "source_lang must be 'en'" in user_error(load_task, CHATTERBOT, "de", ["it"])


def test_target_equal_to_source_is_rejected():
    assert "target language 'en' is the source language" in user_error(load_task, CHATTERBOT, "en", ["en"])


# --- hub datasets, through a local dataset of the same layout ------------------------------------


def test_hub_task_from_xnli_shaped_dataset(xnli_dir: Path):
    spec = TaskSpec(
        hub=HubTaskSpec(
            path=str(xnli_dir),
            config="{lang}",
            text_fields=["premise", "hypothesis"],
            target_validation_split="validation",
        )
    )
    task = load_task(spec, "en", ["de", "fr"])
    assert task.label_names == NLI_LABELS and task.num_labels == 3
    assert task.text_fields == ("premise", "hypothesis")
    assert task.source_train.column_names == ["premise", "hypothesis", "label"]
    assert task.source_train.features["label"] == datasets.Value("int64")
    assert len(task.source_train) == 12 and len(task.source_validation) == 6
    assert task.target_test["de"][0] == {"premise": "de premise 0", "hypothesis": "de hypothesis 0", "label": 0}
    assert set(task.target_validation) == {"de", "fr"} and len(task.target_test["fr"]) == 9


def test_hub_task_max_train_examples_keeps_every_label(xnli_dir: Path):
    hub = HubTaskSpec(path=str(xnli_dir), config="{lang}", text_fields=["premise"], max_train_examples=9)
    spec = TaskSpec(hub=hub)
    task = load_task(spec, "en", ["de"])
    assert len(task.source_train) == 9 and task.source_train.column_names == ["premise", "label"]
    assert task.target_validation == {}


def test_hub_task_errors(xnli_dir: Path):
    unknown_config = TaskSpec(hub=HubTaskSpec(path=str(xnli_dir), config="{lang}", text_fields=["premise"]))
    assert "[es]" in user_error(load_task, unknown_config, "en", ["es"])
    no_placeholder = TaskSpec(hub=HubTaskSpec(path=str(xnli_dir), config="en"))
    assert user_error(load_task, no_placeholder, "en", ["de"]).startswith("task.hub.config: must contain '{lang}'")
    wrong_column = TaskSpec(hub=HubTaskSpec(path=str(xnli_dir), config="{lang}", text_fields=["sentence"]))
    message = user_error(load_task, wrong_column, "en", ["de"])
    assert message == f"{xnli_dir} [en] train: no column 'sentence' (columns: premise, hypothesis, label)"


# --- local files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".tsv", ".parquet"])
def test_files_task_in_every_format(tmp_path: Path, suffix: str):
    task = load_task(files_task(tmp_path, suffix), "en", ["de"])
    assert task.name == "train" and task.label_names == ["food", "money", "sports"]
    assert task.source_train.column_names == ["text", "label"]
    assert task.source_train[:3] == {"text": ["sentence 0", "sentence 1", "sentence 2"], "label": [2, 0, 1]}
    assert task.target_test["de"]["label"] == [2, 0, 1, 2, 0, 1]


def test_files_task_integer_labels_and_target_validation(tmp_path: Path):
    rows = nli_rows("en")
    spec = TaskSpec(
        files=FilesTaskSpec(
            train=write_table(tmp_path / "train.csv", rows),
            validation=write_table(tmp_path / "validation.csv", rows),
            test={"de": write_table(tmp_path / "de.csv", nli_rows("de"))},
            target_validation={"de": write_table(tmp_path / "de_dev.jsonl", nli_rows("de", 3))},
            text_fields=["premise", "hypothesis"],
        )
    )
    task = load_task(spec, "en", ["de"])
    assert task.label_names == ["0", "1", "2"]
    assert task.target_validation["de"]["label"] == [0, 1, 2]


def test_files_errors(tmp_path: Path):
    rows = [{"text": "a", "label": "x"}]
    good = write_table(tmp_path / "good.jsonl", rows)

    def error_for(**paths) -> str:
        files = {"train": good, "validation": good, "test": {"de": good}} | paths
        return user_error(load_task, TaskSpec(files=FilesTaskSpec(**files)), "en", ["de"])

    assert error_for(train=tmp_path / "missing.jsonl") == f"{tmp_path}/missing.jsonl: no such file"
    (tmp_path / "data.xlsx").write_bytes(b"x")
    assert error_for(train=tmp_path / "data.xlsx").startswith(f"{tmp_path}/data.xlsx: unknown extension '.xlsx'")
    (tmp_path / "latin1.jsonl").write_bytes('{"text": "caf\xe9", "label": "x"}\n'.encode("latin-1"))
    assert error_for(validation=tmp_path / "latin1.jsonl") == f"{tmp_path}/latin1.jsonl: not UTF-8 text (line 1)"
    (tmp_path / "empty.jsonl").write_text("")
    assert error_for(validation=tmp_path / "empty.jsonl") == f"{tmp_path}/empty.jsonl: empty file"
    (tmp_path / "header.csv").write_text("text,label\n")
    assert error_for(test={"de": tmp_path / "header.csv"}) == f"{tmp_path}/header.csv: no rows"
    (tmp_path / "broken.jsonl").write_text('{"text": "a", "label":\n')
    assert error_for(train=tmp_path / "broken.jsonl").startswith(f"{tmp_path}/broken.jsonl: line 1: not valid JSON")
    no_label = write_table(tmp_path / "no_label.jsonl", [{"text": "a", "tag": "x"}])
    assert error_for(validation=no_label) == f"{no_label}: no column 'label' (columns: text, tag)"
    unseen = write_table(tmp_path / "unseen.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}])
    assert error_for(test={"de": unseen}) == f"{unseen}: labels not in the source train split: y"
    no_test = TaskSpec(files=FilesTaskSpec(train=good, validation=good, test={}))
    assert user_error(load_task, no_test, "en", ["de"]) == "task.files.test: no test file for language 'de'"


def test_files_error_names_a_missing_text_column(tmp_path: Path):
    spec = files_task(tmp_path, ".jsonl")
    spec = TaskSpec(files=spec.files.model_copy(update={"text_fields": ["premise", "hypothesis"]}))
    expected = f"{tmp_path}/train.jsonl: no column 'premise' (columns: text, label)"
    assert user_error(load_task, spec, "en", ["de"]) == expected


def test_task_fingerprint_follows_source_data_only(tmp_path: Path):
    spec = files_task(tmp_path, ".jsonl")
    fingerprint = fingerprint_task(spec, "en")
    assert fingerprint == fingerprint_task(spec, "en") and len(fingerprint) == 16
    more_tests = {**spec.files.test, "fr": spec.files.train}
    more_targets = TaskSpec(files=spec.files.model_copy(update={"test": more_tests}))
    assert fingerprint_task(more_targets, "en") == fingerprint
    write_table(spec.files.train, [{"text": "changed", "label": "food"}])
    assert fingerprint_task(spec, "en") != fingerprint
    xnli = TaskSpec(hub=HubTaskSpec(path="xnli", config="{lang}"))
    assert fingerprint_task(CHATTERBOT, "en") != fingerprint_task(xnli, "en")
    assert fingerprint_task(xnli, "en") != fingerprint_task(xnli, "de")


# --- phase-1 corpora -----------------------------------------------------------------------------


def test_corpus_from_file(tmp_path: Path):
    text = tmp_path / "de.txt"
    text.write_text("\ufeffErster Satz.\n\n  Zweiter Satz.  \nDritter Satz.\n", encoding="utf-8")
    corpora = {"de": CorpusSpec(file=text)}
    assert load_corpus(CHATTERBOT, corpora, "de") == ["Erster Satz.", "Zweiter Satz.", "Dritter Satz."]
    assert load_corpus(CHATTERBOT, corpora, "de", max_sentences=2) == ["Erster Satz.", "Zweiter Satz."]
    capped = {"de": CorpusSpec(file=text, max_sentences=1)}
    assert load_corpus(CHATTERBOT, capped, "de", max_sentences=2) == ["Erster Satz."]
    assert fingerprint_corpus(CHATTERBOT, corpora, "de") != fingerprint_corpus(CHATTERBOT, capped, "de")


def test_corpus_file_errors(tmp_path: Path):
    latin1, blank = tmp_path / "latin1.txt", tmp_path / "blank.txt"
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    blank.write_text("\n  \n")
    for path, problem in [(latin1, "not UTF-8 text"), (blank, "no sentences"), (tmp_path / "none.txt", "no such file")]:
        assert user_error(load_corpus, CHATTERBOT, {"de": CorpusSpec(file=path)}, "de") == f"{path}: {problem}"


@pytest.mark.parametrize("streaming", [True, False])
def test_corpus_from_hub_dataset(tmp_path: Path, streaming: bool):
    root = tmp_path / "wiki"
    (root / "de").mkdir(parents=True)
    rows = [{"id": 0, "text": "Satz eins.\nSatz zwei."}, {"id": 1, "text": "Satz drei."}]
    write_table(root / "de" / "train.jsonl", rows)
    write_dataset_card(root, {"de": {"train": "de/train.jsonl"}})
    corpora = {"de": CorpusSpec(hub=HubCorpusSpec(path=str(root), config="{lang}", streaming=streaming))}
    assert load_corpus(CHATTERBOT, corpora, "de", max_sentences=2) == ["Satz eins.", "Satz zwei."]
    wrong_field = {"de": CorpusSpec(hub=HubCorpusSpec(path=str(root), config="{lang}", text_field="sentence"))}
    assert "no column 'sentence'" in user_error(load_corpus, CHATTERBOT, wrong_field, "de")


def test_builtin_corpus_for_english_excludes_validation():
    corpus = load_corpus(CHATTERBOT, {}, "en")
    task = load_task(CHATTERBOT, "en", [])
    assert not set(corpus) & set(task.source_validation["text"])
    assert set(task.source_train["text"]) <= set(corpus)


@pytest.mark.parametrize("lang", ["pt", "nl", "zh"])
def test_builtin_corpus_for_a_target_shares_nothing_with_its_evaluation_splits(lang: str):
    corpus = load_corpus(CHATTERBOT, {}, lang)
    task = load_task(CHATTERBOT, "en", [lang])
    test, validation = task.target_test[lang], task.target_validation[lang]
    assert corpus and not set(corpus) & set(test["text"])
    assert not set(corpus) & set(validation["text"])
    assert len(load_corpus(CHATTERBOT, {}, lang, max_sentences=2)) <= 2


@pytest.mark.parametrize("lang", USABLE_TARGETS)
def test_chatterbot_target_validation_is_disjoint_from_test_and_labelled_alike(lang: str):
    task = load_task(CHATTERBOT, "en", [lang])
    test, validation = task.target_test[lang], task.target_validation[lang]
    assert not set(test["text"]) & set(validation["text"])
    by_topic = chatterbot.read_language(lang).by_topic
    assert all(text in by_topic[task.label_names[label]] for text, label in zip(validation["text"], validation["label"]))
    # Per topic, the test share is unchanged by the validation split beside it (about half each).
    assert 0.2 < len(validation) / len(test) < 0.4 and len(set(validation["label"])) >= 5
    chatterbot.target_splits.cache_clear()
    assert load_task(CHATTERBOT, "en", [lang]).target_validation[lang].to_dict() == validation.to_dict()


def test_corpus_errors_without_text():
    files = TaskSpec(files=FilesTaskSpec(train="t.jsonl", validation="v.jsonl", test={}))
    expected = "corpora.de: no phase-1 text for language 'de'; add corpora.de"
    assert user_error(load_corpus, files, {}, "de") == expected
    assert user_error(fingerprint_corpus, files, {}, "de") == expected
    assert fingerprint_corpus(CHATTERBOT, {}, "de") != fingerprint_corpus(CHATTERBOT, {}, "it")


QURAN = TaskSpec(builtin="quran")


def test_quran_splits_share_no_verse_balance_labels_and_keep_evaluation_out_of_phase1_text():
    task = load_task(QURAN, "en", ["zh", "ar"])
    assert task.label_names == ["meccan", "medinan"]
    for dataset in [task.source_train, task.source_validation, *task.target_test.values(), *task.target_validation.values()]:
        labels = list(dataset["label"])
        assert labels.count(0) == labels.count(1) > 100
    assert len(task.target_test["zh"]) >= 900 and len(task.target_validation["zh"]) >= 300

    # the English text of every verse tested or validated in a target is never trained on
    evaluated_keys = {verse.key for verse in quran.verses() if verse.point < quran.VALIDATION_END}
    evaluated_english = {quran.texts("en")[key] for key in evaluated_keys}
    assert not evaluated_english & (set(task.source_train["text"]) | set(task.source_validation["text"]))
    assert len(set(task.source_train["text"])) == len(task.source_train)
    evaluated = set(task.target_test["zh"]["text"]) | set(task.target_validation["zh"]["text"])
    phase1_text = load_corpus(QURAN, {}, "zh")
    assert len(phase1_text) > 3000 and not evaluated & set(phase1_text)
    assert not set(task.source_validation["text"]) & set(load_corpus(QURAN, {}, "en"))


def test_quran_same_verse_same_label_in_every_language():
    test_ar, test_zh = quran.target_splits("ar")[0], quran.target_splits("zh")[0]
    assert [example.label for example in test_ar] == [example.label for example in test_zh]
    assert load_task(QURAN, "en", ["zh"]).target_test["zh"]["text"] == load_task(QURAN, "en", ["zh"]).target_test["zh"]["text"]


def test_quran_language_errors():
    with pytest.raises(UserInputError, match="task quran: no language 'xx'; available: ar, bn, en"):
        load_task(QURAN, "en", ["xx"])
    with pytest.raises(UserInputError, match="source_lang must be 'en'"):
        load_task(QURAN, "zh", ["es"])
    assert fingerprint_corpus(QURAN, {}, "zh") != fingerprint_corpus(CHATTERBOT, {}, "zh")
    assert fingerprint_task(QURAN, "en") != fingerprint_task(CHATTERBOT, "en")


def test_quran_download_is_checked_against_its_published_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BISTIL_RAY_CACHE", str(tmp_path))
    monkeypatch.setattr(quran, "_download", lambda url: b"not the tarball")
    with pytest.raises(UserInputError, match="does not have the published sha512"):
        quran.ensure_downloaded()
    assert not quran.data_dir().exists()
