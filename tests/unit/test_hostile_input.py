"""Hostile input to `python -m bistil_ray.sweep`: each case is refused before Ray starts, with exit
status 2, one line on stderr that names the field or file and what is wrong, and nothing written.

The messages, as a Markdown table:
    .venv/bin/python -m pytest tests/unit/test_hostile_input.py -q -s -k table
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import datasets
import pytest
import yaml

from bistil_ray.sweep import main
from fixtures_teacher import use_offline_hub

BASE = {"name": "hostile", "target_langs": ["de"]}
PREFIX = "bistil_ray.sweep: error: "
TOPICS = ["food", "money", "sports"]

Setup = Callable[[Path, pytest.MonkeyPatch], dict]


@dataclass(frozen=True)
class Case:
    """One refused input. `expected` is part of the message; `{tmp}` stands for the case's folder,
    which holds the sweep file, the storage and whatever files `setup` writes there."""

    id: str
    expected: str
    settings: dict = field(default_factory=dict)  # top-level keys of the sweep YAML, over BASE
    setup: Setup | None = None  # writes bad files; returns more top-level settings
    argv: tuple[str, ...] = ()  # more command-line arguments
    raw: bytes | None = None  # the sweep file's bytes, instead of YAML made from the settings


# --- the files the cases write ------------------------------------------------------------------


def jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def labelled_rows(count: int, labels: list[str] = TOPICS, text: str = "text") -> list[dict]:
    return [{text: f"sentence {i}", "label": labels[i % len(labels)]} for i in range(count)]


def text_file(path: Path, content: bytes = b"one sentence\nanother one\n") -> str:
    path.write_bytes(content)
    return str(path)


def files_task(folder: Path, **replace: str) -> dict:
    """A task on labelled local files with phase-1 text for both languages; `replace` puts another
    file in place of train, validation or test (the German one)."""
    files = {
        "train": jsonl(folder / "train.jsonl", labelled_rows(6)),
        "validation": jsonl(folder / "validation.jsonl", labelled_rows(3)),
        "test": jsonl(folder / "test-de.jsonl", labelled_rows(3)),
        **replace,
    }
    return {
        "task": {"files": {**files, "test": {"de": files["test"]}}},
        "corpora": {"en": {"file": text_file(folder / "en.txt")}, "de": {"file": text_file(folder / "de.txt")}},
    }


def corpus_de(content: bytes | None) -> Setup:
    """The built-in task with the German phase-1 text from a file (None: the file does not exist)."""

    def setup(folder: Path, _: pytest.MonkeyPatch) -> dict:
        path = folder / "de.txt"
        if content is not None:
            path.write_bytes(content)
        return {"corpora": {"de": {"file": str(path)}}}

    return setup


def corpus_folder(folder: Path, _: pytest.MonkeyPatch) -> dict:
    (folder / "texts").mkdir()
    return {"corpora": {"de": {"file": str(folder / "texts")}}}


def teacher_dir(*files: str) -> Setup:
    """A local teacher folder holding `files` (config.json gets a 4-layer BERT config)."""

    def setup(folder: Path, _: pytest.MonkeyPatch) -> dict:
        teacher = folder / "teacher"
        teacher.mkdir()
        for name in files:
            content = json.dumps({"model_type": "bert", "num_hidden_layers": 4}) if name == "config.json" else "x"
            (teacher / name).write_text(content)
        return {"teacher": str(teacher), "student": {"layers": 2}}

    return setup


def offline_teacher(name: str) -> Setup:
    def setup(folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
        use_offline_hub(folder.parent, monkeypatch)
        return {"teacher": name}

    return setup


def started_sweep(folder: Path, _: pytest.MonkeyPatch) -> dict:
    """What a sweep that has started leaves in its storage (Tune's tuner.pkl and sweep.json)."""
    experiment = folder / "storage" / BASE["name"]
    experiment.mkdir(parents=True)
    (experiment / "tuner.pkl").write_bytes(b"")
    (experiment / "sweep.json").write_text(json.dumps(BASE))
    return {}


def a_file(name: str) -> Setup:
    def setup(folder: Path, _: pytest.MonkeyPatch) -> dict:
        (folder / name).write_text("not a folder")
        return {}

    return setup


# --- the cases -----------------------------------------------------------------------------------

CASES = [
    # the sweep file itself
    Case("malformed_yaml", "sweep.yaml: malformed YAML at line 3", raw=b"name: t\ntarget_langs: [de\nseed: 1\n"),
    Case("top_level_not_a_mapping", "sweep.yaml: expected a mapping at the top level", raw=b"- de\n- fr\n"),
    Case("empty_sweep_file", "sweep.yaml: expected a mapping at the top level", raw=b""),
    Case("sweep_file_not_utf8", "sweep.yaml: not UTF-8 text", raw=b"name: caf\xe9\ntarget_langs: [de]\n"),
    Case("set_without_value", "--set 'trials_per_pair': expected key=value", argv=("--set", "trials_per_pair")),
    # unknown keys, with the closest valid key
    Case("unknown_key", "trails_per_pair: unknown key; did you mean 'trials_per_pair'?", {"trails_per_pair": 3}),
    Case("unknown_nested_key", "phase2.densty: unknown key; did you mean 'density'?", {"phase2": {"densty": 0.1}}),
    Case(
        "unknown_resources_key",
        "resources.gpu_per_worker: unknown key; did you mean 'gpus_per_worker'?",
        {"resources": {"gpu_per_worker": 1}},
    ),
    # wrong types
    Case("steps_not_a_number", "phase1.steps: Input should be a valid integer", {"phase1": {"steps": "many"}}),
    Case("target_langs_not_a_list", "target_langs: Input should be a valid list", {"target_langs": "de"}),
    Case(
        "search_value_not_a_number", "search_space.lr: 'fast': Input should be a valid number", {"search_space": {"lr": "fast"}}
    ),
    Case("lr_not_finite", "phase2.lr: Input should be a finite number", {"phase2": {"lr": float("nan")}}),
    Case("name_escapes_storage", "name: String should match pattern", {"name": "../elsewhere"}),
    Case(
        "task_of_two_kinds",
        "task: give exactly one of builtin, hub, files",
        {"task": {"builtin": "chatterbot", "hub": {"path": "facebook/xnli"}}},
    ),
    # impossible ranges
    Case("density_zero", "phase2.density: Input should be greater than 0", {"phase2": {"density": 0}}),
    Case("density_above_one", "phase2.density: Input should be less than or equal to 1", {"phase2": {"density": 1.5}}),
    Case(
        "searched_density_above_one",
        "search_space.density: 1.5: Input should be less than or equal to 1",
        {"search_space": {"density": {"uniform": [0.05, 1.5]}}},
    ),
    Case(
        "student_deeper_than_teacher",
        "student.layers: 24 layers is deeper than the teacher (builtin:multilingual-e5-small: 12 layers)",
        {"student": {"layers": 24}},
    ),
    Case("negative_steps", "phase1.steps: Input should be greater than 0", {"phase1": {"steps": -5}}),
    Case(
        "reversed_search_range",
        "search_space.lr: loguniform: the low bound must be below the high bound",
        {"search_space": {"lr": {"loguniform": [1e-3, 1e-5]}}},
    ),
    Case(
        "asha_grace_beyond_phase2",
        "asha.grace_period_steps: must be below phase 2's 600 steps",
        {"scheduler": "asha", "asha": {"grace_period_steps": 10_000}},
    ),
    Case(
        "target_validation_objective_without_data",
        "objective.score: target_validation needs a target validation set",
        {"objective": {"score": "target_validation"}},
        setup=lambda folder, _: files_task(folder),
    ),
    # impossible resources
    Case(
        "no_workers",
        "resources.workers_per_trial: Input should be greater than or equal to 1",
        {"resources": {"workers_per_trial": 0}},
    ),
    Case(
        "negative_cpus",
        "resources.cpus_per_worker: Input should be greater than 0",
        {"resources": {"cpus_per_worker": -1}},
    ),
    Case(
        "more_cpus_than_the_machine",
        "resources: a trial needs 4096 CPU (workers_per_trial x cpus_per_worker) but this machine has",
        {"resources": {"workers_per_trial": 4096}},
    ),
    Case(
        "more_gpus_than_the_machine",
        "resources: a trial needs 4096 GPU (workers_per_trial x gpus_per_worker) but this machine has",
        {"resources": {"use_gpu": True, "gpus_per_worker": 4096}},
    ),
    # language pairs and languages
    Case("target_is_the_source", "target_langs.0: 'en' is the source language", {"target_langs": ["en"]}),
    Case("target_listed_twice", "target_langs.1: 'de' is listed twice", {"target_langs": ["de", "de"]}),
    Case(
        "unknown_target_language",
        "target_langs.1: the built-in chatterbot task has no language 'xx' (available: bn, de, en,",
        {"target_langs": ["de", "xx"]},
    ),
    Case(
        "unknown_source_language",
        "source_lang: the built-in chatterbot task has no language 'klingon'",
        {"source_lang": "klingon"},
    ),
    Case(
        "target_without_test_file",
        "task.files.test: no test file for language 'fr'",
        {"target_langs": ["de", "fr"]},
        setup=lambda folder, _: files_task(folder),
    ),
    # phase-1 text
    Case("empty_corpus", "{tmp}/de.txt: no sentences", setup=corpus_de(b"")),
    Case("blank_corpus", "{tmp}/de.txt: no sentences", setup=corpus_de(b"\n   \n\t\n")),
    Case("corpus_not_utf8", "{tmp}/de.txt: not UTF-8 text", setup=corpus_de("Grüße\n".encode("latin-1"))),
    Case("missing_corpus", "{tmp}/de.txt: no such file", setup=corpus_de(None)),
    Case("corpus_is_a_folder", "{tmp}/texts: is a directory, expected a file", setup=corpus_folder),
    Case(
        "no_phase1_text_for_a_language",
        "corpora.de: no phase-1 text for language 'de'; add corpora.de",
        setup=lambda folder, _: {**files_task(folder), "corpora": {"en": {"file": text_file(folder / "en.txt")}}},
    ),
    # labelled files
    Case(
        "labelled_file_not_utf8",
        "{tmp}/latin1.jsonl: not UTF-8 text",
        setup=lambda folder, _: files_task(
            folder, train=text_file(folder / "latin1.jsonl", '{"text": "café", "label": "food"}\n'.encode("latin-1"))
        ),
    ),
    Case(
        "labelled_file_without_text_column",
        "{tmp}/sentences.jsonl: no column 'text' (columns: sentence, label)",
        setup=lambda folder, _: files_task(
            folder, train=jsonl(folder / "sentences.jsonl", labelled_rows(6, text="sentence"))
        ),
    ),
    Case(
        "labelled_file_without_label_column",
        "{tmp}/unlabelled.jsonl: no column 'label' (columns: text)",
        setup=lambda folder, _: files_task(folder, test=jsonl(folder / "unlabelled.jsonl", [{"text": "hallo"}])),
    ),
    Case(
        "test_labels_the_source_split_lacks",
        "{tmp}/weather.jsonl: labels not in the source train split: weather",
        setup=lambda folder, _: files_task(
            folder, test=jsonl(folder / "weather.jsonl", labelled_rows(4, labels=["food", "weather"]))
        ),
    ),
    Case(
        "empty_labelled_file",
        "{tmp}/empty.jsonl: empty file",
        setup=lambda folder, _: files_task(folder, validation=text_file(folder / "empty.jsonl", b"")),
    ),
    Case(
        "labelled_file_of_unknown_format",
        "{tmp}/train.xlsx: unknown extension '.xlsx'",
        setup=lambda folder, _: files_task(folder, train=text_file(folder / "train.xlsx", b"PK")),
    ),
    Case(
        "missing_labelled_file",
        "{tmp}/absent.jsonl: no such file",
        setup=lambda folder, _: files_task(folder, validation=str(folder / "absent.jsonl")),
    ),
    # teachers
    Case(
        "teacher_without_weights", "teacher '{tmp}/teacher': no model.safetensors in", setup=teacher_dir("config.json")
    ),
    Case(
        "teacher_with_pickled_weights_only",
        "teacher '{tmp}/teacher': {tmp}/teacher holds only pytorch_model.bin (a pickle); "
        "safetensors weights are required",
        setup=teacher_dir("config.json", "pytorch_model.bin"),
    ),
    Case(
        "teacher_without_config", "teacher '{tmp}/teacher': no config.json in", setup=teacher_dir("model.safetensors")
    ),
    Case("teacher_folder_missing", "teacher '{tmp}/nowhere': no such directory", {"teacher": "{tmp}/nowhere"}),
    Case(
        "unreachable_hub_teacher_offline",
        "teacher 'org/missing': not a built-in teacher or a local model directory, and not in the local "
        "Hugging Face cache; the hub cannot be reached from this machine (offline)",
        setup=offline_teacher("org/missing"),
    ),
    Case("unknown_builtin_teacher", "teacher 'builtin:mbert': unknown built-in teacher", {"teacher": "builtin:mbert"}),
    Case(
        "teacher_of_unknown_user",
        "teacher: ~no-such-user-bistil is not a user on this machine",
        {"teacher": "~no-such-user-bistil/model"},
    ),
    # storage
    Case(
        "storage_inside_a_file",
        "--storage {tmp}/file/results: {tmp}/file is a file, not a folder",
        setup=a_file("file"),
        argv=("--storage", "{tmp}/file/results"),
    ),
    Case(
        "storage_not_writable",
        "--storage /sys/bistil-results: cannot write in /sys (",
        argv=("--storage", "/sys/bistil-results"),
    ),
    Case(
        "storage_not_local",
        "--storage s3://bucket/results: only local paths and file:// URIs are supported",
        argv=("--storage", "s3://bucket/results"),
    ),
    Case(
        "storage_of_unknown_user",
        "--storage ~no-such-user-bistil/results: ~no-such-user-bistil is not a user on this machine",
        argv=("--storage", "~no-such-user-bistil/results"),
    ),
    Case("sweep_exists_without_resume", "sweep 'hostile' already exists; pass --resume", setup=started_sweep),
    Case("resume_without_a_sweep", "--resume: no sweep to resume in {tmp}/storage/hostile", argv=("--resume",)),
    Case(
        "dashboard_host_for_a_cluster",
        "--dashboard-host: the cluster's dashboard is set by `ray start --dashboard-host`",
        argv=("--address", "127.0.0.1:6379", "--dashboard-host", "0.0.0.0"),
    ),
]


def snapshot(folder: Path) -> dict[str, tuple[int, int] | None]:
    """Every entry under `folder`; files with their size and modification time. (A folder's own time
    changes when the storage check creates and removes its probe folder in it.)"""
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns) if path.is_file() else None
        for path in sorted(folder.rglob("*"))
    }


def refusal(case: Case, root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> str:
    """Run the sweep CLI on `case` in a new folder under `root`; check that it refused the input the
    way every refusal must; return the message with the folder written as <tmp>."""
    folder = root / "case"
    folder.mkdir()
    settings = {**BASE, **case.settings}
    if case.setup is not None:
        settings.update(case.setup(folder, monkeypatch))
    sweep_file = folder / "sweep.yaml"
    text = yaml.safe_dump(settings).replace("{tmp}", str(folder)).encode()
    sweep_file.write_bytes(case.raw if case.raw is not None else text)
    more = [arg.replace("{tmp}", str(folder)) for arg in case.argv]
    argv = [str(sweep_file), "--storage", str(folder / "storage"), *more]
    before = snapshot(folder)
    capsys.readouterr()

    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), lines
    message = lines[0].removeprefix(PREFIX)
    assert case.expected.replace("{tmp}", str(folder)) in message
    assert snapshot(folder) == before  # nothing written: no storage, no sweep.json, no probe
    return message.replace(str(folder), "<tmp>")


@pytest.fixture(autouse=True)
def no_sweep_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An input that passed every check would start Ray and train: make that a test failure instead.
    The datasets cache goes to a folder of its own (the case folder must stay unchanged)."""
    from bistil_ray.orchestration import driver

    def started(*args, **kwargs):
        raise AssertionError("the input passed validation: the sweep would have started Ray")

    monkeypatch.setattr(driver, "run_sweep", started)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets-cache")


MESSAGES: dict[str, str] = {}  # case id -> message, kept for the table


def test_there_are_at_least_thirty_distinct_cases():
    assert len(CASES) >= 30 and len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_hostile_input_is_refused_before_anything_starts(case, tmp_path, monkeypatch, capsys):
    MESSAGES[case.id] = refusal(case, tmp_path, monkeypatch, capsys)


def test_print_the_case_table(tmp_path_factory, capsys, request):
    """Every case with its message, as a Markdown table, printed under -s. Cases the test above has
    already run in this session are not run again."""
    for case in CASES:
        if case.id not in MESSAGES:
            with pytest.MonkeyPatch.context() as monkeypatch:
                MESSAGES[case.id] = refusal(case, tmp_path_factory.mktemp(case.id), monkeypatch, capsys)
    rows = [f"| {case.id} | {MESSAGES[case.id].replace('|', '&#124;')} |" for case in CASES]
    assert all("\n" not in row for row in rows)
    if request.config.getoption("capture") == "no":
        with capsys.disabled():
            print("\n| case | message |\n|---|---|\n" + "\n".join(rows))
