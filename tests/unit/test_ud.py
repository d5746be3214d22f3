"""A UD task (`task.ud`): one folder named once, the splits the config fixes, phase-1 text from the
treebanks' `# text =` lines and never from a test split; the same task from a UD-shaped hub dataset;
and, where ../shared/data/ud is present, the real treebanks."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
import yaml

from bistil_ray.config import RunConfig, TaskSpec, UDTaskSpec, load_config, validate
from bistil_ray.data.corpora import fingerprint_corpus, load_corpus
from bistil_ray.data.tasks import fingerprint_target, fingerprint_task, load_task
from bistil_ray.data.ud import SHARED_UD_FOLDER, UD_FOLDER_ENV, ud_folder
from bistil_ray.errors import UserInputError
from bistil_ray.orchestration.sweep_config import load_sweep

ROOT = Path(__file__).resolve().parents[2]
UPOS = ["NOUN", "PUNCT", "ADP", "NUM", "SYM", "SCONJ", "ADJ", "PART", "DET", "CCONJ", "PROPN", "PRON", "X", "_", "ADV", "INTJ", "VERB", "AUX"]


def sentence(number: int, words: list[tuple[str, str]], text: str | None = None) -> str:
    lines = [f"# sent_id = {number}", f"# text = {text or ' '.join(word for word, _ in words)}"]
    lines += [f"{index}\t{word}\t_\t{tag}\t_\t_\t{0 if index == 1 else 1}\t{'root' if index == 1 else 'dep'}\t_\t_"
              for index, (word, tag) in enumerate(words, start=1)]  # fmt: skip
    return "\n".join(lines) + "\n\n"


def write_treebank(folder: Path, name: str, code: str, splits: dict[str, list[str]]) -> None:
    (folder / name).mkdir(parents=True)
    for split, texts in splits.items():
        content = "".join(sentence(i, [(word, "NOUN" if i % 2 else "VERB") for word in text.split()]) for i, text in enumerate(texts))
        (folder / name / f"{code}-ud-{split}.conllu").write_text(content, encoding="utf-8")


@pytest.fixture
def ud_root(tmp_path: Path) -> Path:
    root = tmp_path / "ud"
    write_treebank(root, "UD_English-EWT", "en_ewt", {"dev": ["en train one", "en train two"], "test": ["en validation"]})
    write_treebank(root, "UD_German-GSD", "de_gsd", {"dev": ["de dev one", "de dev two", "de dev three"], "test": ["de test only"]})
    return root


def test_a_ud_task_reads_the_splits_the_config_fixes(ud_root: Path):
    spec = TaskSpec(ud={"folder": ud_root})
    task = load_task(spec, "en", ["de"])
    assert task.kind == "token" and task.name == "ud-upos" and spec.kind == "token"
    assert task.source_train["tokens"] == [["en", "train", "one"], ["en", "train", "two"]]
    assert task.source_validation["tokens"] == [["en", "validation"]]
    assert task.target_validation["de"]["tokens"][0] == ["de", "dev", "one"]
    assert task.target_test["de"]["tokens"] == [["de", "test", "only"]]
    assert [task.label_names[i] for i in task.source_train["tags"][0]] == ["VERB", "VERB", "VERB"]


def test_phase1_text_is_the_text_split_and_never_a_test_sentence(ud_root: Path):
    spec = TaskSpec(ud={"folder": ud_root})
    assert load_corpus(spec, {}, "de") == ["de dev one", "de dev two", "de dev three"]
    assert load_corpus(spec, {}, "de", max_sentences=1) == ["de dev one"]
    before = fingerprint_corpus(spec, {}, "de")
    (ud_root / "UD_German-GSD" / "de_gsd-ud-test.conllu").write_text(sentence(0, [("anders", "ADV")]))
    assert fingerprint_corpus(spec, {}, "de") == before  # the test split is not phase-1 text
    with pytest.raises(ValueError, match="text_split: a target's test split is never distilled on"):
        UDTaskSpec(text_split="test")


def test_keys_follow_the_files_read(ud_root: Path):
    spec = TaskSpec(ud={"folder": ud_root})
    source, target = fingerprint_task(spec, "en"), fingerprint_target(spec, "en", "de")
    (ud_root / "UD_German-GSD" / "de_gsd-ud-test.conllu").write_text(sentence(0, [("anders", "ADV")]))
    assert fingerprint_task(spec, "en") == source and fingerprint_target(spec, "en", "de") != target


@pytest.mark.parametrize(
    "settings, langs, message",
    [
        ({"folder": "missing"}, ["de"], "task.ud.folder: .*missing is not a folder"),
        ({}, ["fr"], "task.ud.treebanks: no treebank for language 'fr'"),
        ({"treebanks": {"en": "en_ewt", "de": "de_hdt"}}, ["de"], "task.ud: no de_hdt-ud-test.conllu in"),
        ({"source_train_split": "train"}, ["de"], "task.ud: no en_ewt-ud-train.conllu in"),
    ],
)
def test_a_missing_folder_treebank_or_split_is_one_line_naming_it(ud_root: Path, monkeypatch, settings: dict, langs: list[str], message: str):
    monkeypatch.chdir(ud_root.parent)
    spec = TaskSpec(ud={"folder": ud_root, **settings})
    with pytest.raises(UserInputError, match=message) as raised:
        load_task(spec, "en", langs)
    assert "\n" not in str(raised.value)


def test_the_same_split_twice_is_refused_by_the_schema():
    with pytest.raises(UserInputError, match="task: ud: source_validation_split: the source treebank trains on that split"):
        validate(TaskSpec, {"ud": {"source_validation_split": "dev"}}, "task")
    with pytest.raises(UserInputError, match="target_validation_split: a target's test split is never used to choose"):
        validate(TaskSpec, {"ud": {"target_validation_split": "test"}}, "task")


def test_the_folder_comes_from_the_config_else_the_environment_else_the_shared_folder(ud_root: Path, monkeypatch):
    monkeypatch.setenv(UD_FOLDER_ENV, str(ud_root))
    assert ud_folder(UDTaskSpec()) == ud_root.resolve()
    assert ud_folder(UDTaskSpec(folder=ud_root / "UD_German-GSD")) == (ud_root / "UD_German-GSD").resolve()
    monkeypatch.delenv(UD_FOLDER_ENV)
    if SHARED_UD_FOLDER.is_dir():
        assert ud_folder(UDTaskSpec()) == SHARED_UD_FOLDER
    else:
        with pytest.raises(UserInputError, match=f"no UD folder given .*{UD_FOLDER_ENV}"):
            ud_folder(UDTaskSpec())


def test_a_sweep_hands_its_trials_the_folder_as_an_absolute_path(ud_root: Path, monkeypatch):
    monkeypatch.chdir(ud_root.parent)
    config = ud_root.parent / "sweep.yaml"
    config.write_text(yaml.safe_dump({"name": "ud", "task": {"ud": {"folder": "ud"}}, "target_langs": ["de"]}))
    sweep = load_sweep(config)
    assert sweep.with_absolute_paths().task.ud.folder == ud_root.resolve()


@pytest.fixture
def ud_hub_dir(tmp_path: Path) -> Path:
    """A dataset shaped as the hub's universal_dependencies (a config per treebank, `tokens`, `upos` as a
    Sequence of ClassLabel, `head`, `deprel`), loadable offline with `load_dataset(<dir>, <config>)`."""
    root = tmp_path / "universal_dependencies"
    features = datasets.Features({
        "idx": datasets.Value("string"), "text": datasets.Value("string"),
        "tokens": datasets.Sequence(datasets.Value("string")),
        "upos": datasets.Sequence(datasets.ClassLabel(names=UPOS)),
        "head": datasets.Sequence(datasets.Value("string")), "deprel": datasets.Sequence(datasets.Value("string")),
    })  # fmt: skip
    entries = []
    for code in ("en_ewt", "de_gsd"):
        (root / code).mkdir(parents=True)
        rows = [{"idx": f"{code}-{i}", "text": f"{code} {i} .", "tokens": [code, str(i), "."], "upos": [0, 3, 1],
                 "head": ["0", "1", "1"], "deprel": ["root", "nummod", "punct"]} for i in range(4)]  # fmt: skip
        for split in ("train", "validation", "test"):
            datasets.Dataset.from_list(rows, features=features).to_parquet(str(root / code / f"{split}.parquet"))
        entries.append({"config_name": code, "data_files": [{"split": s, "path": f"{code}/{s}.parquet"} for s in ("train", "validation", "test")]})
    (root / "README.md").write_text("---\n" + yaml.safe_dump({"configs": entries}) + "---\n")
    return root


def test_the_hub_ud_datasets_load_with_a_config_per_language(ud_hub_dir: Path):
    hub = {"kind": "token", "path": str(ud_hub_dir), "configs": {"en": "en_ewt", "de": "de_gsd"}, "label_field": "upos",
           "target_validation_split": "validation"}  # fmt: skip
    task = load_task(TaskSpec(hub=hub), "en", ["de"])
    assert task.kind == "token" and task.label_names == UPOS  # the ClassLabel's order
    assert task.target_test["de"][0] == {"tokens": ["de_gsd", "0", "."], "tags": [0, 3, 1]}
    assert fingerprint_target(TaskSpec(hub=hub), "en", "de") != fingerprint_target(TaskSpec(hub={**hub, "configs": {"en": "en_ewt", "de": "de_hdt"}}), "en", "de")
    with pytest.raises(UserInputError, match="task.hub.configs must name a config for 'fi'"):
        load_task(TaskSpec(hub=hub), "en", ["fi"])


@pytest.mark.parametrize("name, kind", [("ud_pos", "token"), ("ud_dp", "parse")])
def test_the_shipped_configs_validate(name: str, kind: str, ud_root: Path, monkeypatch):
    monkeypatch.setenv(UD_FOLDER_ENV, str(ud_root))
    run = load_config(RunConfig, ROOT / "configs" / f"{name}.yaml")
    assert run.task.ud is not None and run.task.kind == kind
    sweep = load_sweep(ROOT / "sweeps" / f"{name}.yaml")
    assert sweep.task.kind == kind and sweep.objective.score == "target_validation"
    assert sweep.phase2.target_text_ratio == run.phase2.target_text_ratio  # one choice, made on validation
    assert {"student_layers", "density", "alpha_hidden", "alpha_attn"} <= {
        name for name, dimension in sweep.dimensions().items() if dimension.fixed is None
    }


needs_shared_ud = pytest.mark.skipif(not SHARED_UD_FOLDER.is_dir(), reason=f"no UD treebanks at {SHARED_UD_FOLDER}")


@needs_shared_ud
def test_the_real_treebanks_load_with_the_sizes_of_their_release():
    task = load_task(TaskSpec(ud={}), "en", ["de", "fi", "id", "ja", "zh"])
    assert (len(task.source_train), len(task.source_validation)) == (2001, 2077)
    assert {lang: len(split) for lang, split in task.target_test.items()} == {"de": 977, "fi": 1555, "id": 557, "ja": 543, "zh": 500}
    assert len(task.label_names) == 17  # UD's UPOS tags, every one in English-EWT dev
    assert sum(len(words) for words in task.target_test["de"]["tokens"]) == 16499
