"""A student as a standard Hugging Face model directory that loads with no code of this project.

The directory holds `model.safetensors`, `config.json` (label names included), the trimmed
tokenizer's files, a `README.md` model card and `bistil_ray.json` with the run's metadata. It is
published atomically: readers see the whole directory or nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from bistil_ray.atomic import atomic_directory
from bistil_ray.errors import UserInputError
from bistil_ray.method.evaluation import count_parameters

METADATA_FILE = "bistil_ray.json"
# Per task kind (config.TaskKind): the Auto class a model of that kind loads with, and its hub pipeline tag.
MODEL_CLASSES = {"sequence": AutoModelForSequenceClassification, "token": AutoModelForTokenClassification}
PIPELINE_TAGS = {"sequence": "text-classification", "token": "token-classification"}


def task_kind_of(class_names: list[str]) -> str:
    """"token" for a token classifier, else "sequence", by its class name (a model's type, or the
    `architectures` of a saved config)."""
    return "token" if any(name.endswith("ForTokenClassification") for name in class_names) else "sequence"


def loading_snippet(kind: str) -> list[str]:
    """How a card tells a user to load the student: plain transformers, nothing of this project."""
    auto_class = MODEL_CLASSES[kind].__name__
    return [
        "```python",
        f"from transformers import {auto_class}, AutoTokenizer",
        "",
        'tokenizer = AutoTokenizer.from_pretrained("path/to/this/directory")',
        f'model = {auto_class}.from_pretrained("path/to/this/directory")',
        "```",
    ]


def _label_config(model: PreTrainedModel, label_names: list[str]) -> None:
    if len(label_names) != model.config.num_labels:
        raise UserInputError(
            f"label_names: {len(label_names)} names for a model with {model.config.num_labels} labels"
        )
    if len(set(label_names)) != len(label_names):
        raise UserInputError(f"label_names: names repeat ({label_names})")
    model.config.id2label = dict(enumerate(label_names))
    model.config.label2id = {name: index for index, name in enumerate(label_names)}
    if task_kind_of([type(model).__name__]) == "sequence":
        model.config.problem_type = "single_label_classification"


def _format_score(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def model_card(model: PreTrainedModel, label_names: list[str], metadata: dict[str, Any]) -> str:
    """README.md: what the model is, where it came from, how well it did, how to load it.

    Reads the optional metadata keys `teacher`, `task`, `source_lang`, `target_lang` and `scores`
    (a flat mapping of metric name to value).
    """
    languages = [metadata[key] for key in ("source_lang", "target_lang") if key in metadata]
    kind = task_kind_of([type(model).__name__])
    front_matter = ["---", "library_name: transformers", f"pipeline_tag: {PIPELINE_TAGS[kind]}"]
    if languages:
        front_matter += ["language:", *(f"- {language}" for language in languages)]
    front_matter += ["tags:", "- bistil", "- knowledge-distillation", "---"]

    pair = " → ".join(languages) if languages else "a language pair"
    config = model.config
    lines = [
        "# Bilingual distilled student",
        "",
        f"A {config.num_hidden_layers}-layer, {config.hidden_size}-hidden {config.model_type} {kind} classifier "
        f"({count_parameters(model):,} parameters) distilled bilingually (BiStil) for {pair}"
        + (f" from `{metadata['teacher']}`" if "teacher" in metadata else "")
        + (f" on the task `{metadata['task']}`" if "task" in metadata else "")
        + ". Its vocabulary is trimmed to the pieces the two languages use.",
        "",
        "Labels: " + ", ".join(f"`{name}`" for name in label_names) + ".",
    ]
    if metadata.get("scores"):
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {_format_score(value)} |" for name, value in metadata["scores"].items()]
    lines += ["", *loading_snippet(kind), "", f"Run metadata: `{METADATA_FILE}`."]
    return "\n".join(front_matter + lines) + "\n"


def write_student_directory(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    directory: Path,
    *,
    label_names: list[str],
    extra_metadata: dict[str, Any] | None = None,
) -> None:
    """Fill the (empty, existing) `directory` with a Hugging Face model directory: weights,
    config with label names, tokenizer, a model card and `bistil_ray.json` metadata.

    Sets the label names on `model.config` (they travel with the model from here on).
    `extra_metadata` must be JSON-serialisable (paths are written as strings).
    """
    metadata = dict(extra_metadata or {})
    _label_config(model, label_names)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "README.md").write_text(model_card(model, label_names, metadata), encoding="utf-8")
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str) + "\n", encoding="utf-8")


def export_student(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
    *,
    label_names: list[str],
    extra_metadata: dict[str, Any] | None = None,
) -> Path:
    """Publish a new model directory at `out_dir` atomically (see `write_student_directory`)."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise UserInputError(f"{out_dir}: already exists; export to a new directory")
    with atomic_directory(out_dir) as staging:
        write_student_directory(model, tokenizer, staging, label_names=label_names, extra_metadata=extra_metadata)
    return out_dir


def load_exported(out_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The exported model (in eval mode) and its tokenizer, through the plain Auto classes: a
    sequence or a token classifier, as its config says."""
    out_dir = Path(out_dir)
    if not (out_dir / "config.json").is_file():
        raise UserInputError(f"{out_dir}: not an exported model directory (no config.json)")
    try:
        kind = task_kind_of(AutoConfig.from_pretrained(out_dir).architectures or [])
        model = MODEL_CLASSES[kind].from_pretrained(out_dir, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(out_dir)
    except (OSError, ValueError, KeyError, TypeError) as error:  # a damaged or foreign directory
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserInputError(f"{out_dir}: cannot load the model: {reason}") from error
    return model.eval(), tokenizer
