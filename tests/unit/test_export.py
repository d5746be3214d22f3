import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from bistil_ray.errors import UserInputError
from bistil_ray.atomic import atomic_directory
from bistil_ray.method.export import load_exported, write_student_directory

from tiny_students import LABELS, SENTENCES, bert_student, xlmr_student

# Runs in a fresh interpreter that has only transformers: what a user who downloads the directory has.
LOAD_WITHOUT_THIS_PACKAGE = textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    directories, sentences = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    results = {}
    for directory in directories:
        tokenizer = AutoTokenizer.from_pretrained(directory)
        model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
        with torch.inference_mode():
            logits = model(**tokenizer(sentences, padding=True, return_tensors="pt")).logits
        results[directory] = {
            "logits": logits.tolist(),
            "labels": [model.config.id2label[i] for i in logits.argmax(-1).tolist()],
        }
    assert "bistil_ray" not in sys.modules
    print(json.dumps(results))
    """
)


def export_student(model, tokenizer, out: Path, **options) -> Path:
    with atomic_directory(out) as staging:
        write_student_directory(model, tokenizer, staging, **options)
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[Path, torch.nn.Module, object]]:
    root = tmp_path_factory.mktemp("exports")
    directories = {}
    for name, build in (("bert", bert_student), ("xlmr", xlmr_student)):
        model, tokenizer = build()
        metadata = {"teacher": "intfloat/multilingual-e5-small", "source_lang": "en", "target_lang": "pt",
                    "scores": {"target_accuracy": 0.8125}, "vocabulary": root / "vocab"}
        out = export_student(model, tokenizer, root / name, label_names=LABELS, extra_metadata=metadata)
        directories[name] = (out, model, tokenizer)
    return directories


def in_process_logits(model: torch.nn.Module, tokenizer) -> torch.Tensor:
    with torch.inference_mode():
        return model(**tokenizer(SENTENCES, padding=True, return_tensors="pt")).logits


def test_a_fresh_interpreter_without_this_package_loads_identical_models(exported):
    directories = [str(out) for out, _, _ in exported.values()]
    completed = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_THIS_PACKAGE, json.dumps(directories), json.dumps(SENTENCES)],
        capture_output=True, text=True, timeout=120, cwd=Path(directories[0]).parent,
    )
    assert completed.returncode == 0, completed.stderr
    results = json.loads(completed.stdout.strip().splitlines()[-1])
    for out, model, tokenizer in exported.values():
        expected = in_process_logits(model, tokenizer)
        assert torch.equal(torch.tensor(results[str(out)]["logits"], dtype=expected.dtype), expected)
        assert results[str(out)]["labels"] == [LABELS[i] for i in expected.argmax(-1).tolist()]


def test_directory_is_a_standard_safetensors_model_with_labels_and_metadata(exported):
    out, model, _ = exported["bert"]
    names = {entry.name for entry in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "bistil_ray.json"} <= names
    assert not [name for name in names if name.endswith((".bin", ".pt", ".pth", ".pkl"))]
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "greetings", "1": "food", "2": "sports"}
    assert config["label2id"] == {"greetings": 0, "food": 1, "sports": 2}
    assert config["problem_type"] == "single_label_classification"
    metadata = json.loads((out / "bistil_ray.json").read_text())
    assert metadata["scores"] == {"target_accuracy": 0.8125} and metadata["vocabulary"].endswith("vocab")
    assert not list(out.parent.glob(".tmp-*"))


def test_load_exported_returns_the_same_model(exported):
    out, model, tokenizer = exported["xlmr"]
    loaded, loaded_tokenizer = load_exported(out)
    assert not loaded.training
    assert loaded_tokenizer.convert_ids_to_tokens(loaded_tokenizer("o gato")["input_ids"]) == ["<s>", "o", "gato", "</s>"]
    assert torch.equal(in_process_logits(loaded, loaded_tokenizer), in_process_logits(model, tokenizer))


def test_export_refuses_wrong_label_names_and_loading_refuses_a_folder_without_a_model(tmp_path: Path):
    model, tokenizer = bert_student()
    (tmp_path / "taken").mkdir()
    with pytest.raises(UserInputError, match="label_names"):
        export_student(model, tokenizer, tmp_path / "new", label_names=LABELS[:2])
    assert not (tmp_path / "new").exists()
    with pytest.raises(UserInputError, match="config.json"):
        load_exported(tmp_path / "taken")


@pytest.mark.parametrize("damage", ["header", "truncated", "empty"])
def test_a_student_whose_safetensors_file_is_damaged_is_one_line_not_the_librarys_traceback(tmp_path, damage):
    model, tokenizer = bert_student()
    out = export_student(model, tokenizer, tmp_path / "student", label_names=LABELS)
    weights = out / "model.safetensors"
    data = bytearray(weights.read_bytes())
    damaged = {"header": data[:8] + b"{not json" + data[17:], "truncated": data[: len(data) // 2], "empty": b""}[damage]
    weights.write_bytes(bytes(damaged))
    with pytest.raises(UserInputError, match=r"student: cannot load the model: "):
        load_exported(out)
