"""A student as a standard Hugging Face model directory that loads with no code of this project.

The directory holds `model.safetensors`, `config.json` (label names included), the trimmed
tokenizer's files and `bistil_ray.json` with the run's metadata; its caller publishes it atomically
(readers see the whole directory or nothing), and the evaluation adds the model card.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from bistil_ray.errors import UserInputError
from bistil_ray.method.parser import PARSER_CONFIG_FILE, BiaffineParser

METADATA_FILE = "bistil_ray.json"
# Per task kind (config.TaskKind): the class a model of that kind loads with, and its hub pipeline tag.
MODEL_CLASSES = {"sequence": AutoModelForSequenceClassification, "token": AutoModelForTokenClassification, "parse": BiaffineParser,
                 "qa": AutoModelForQuestionAnswering}  # fmt: skip
PIPELINE_TAGS = {"sequence": "text-classification", "token": "token-classification", "parse": "token-classification",
                 "qa": "question-answering"}  # fmt: skip


def task_kind_of(class_names: list[str]) -> str:
    """"parse" for a parser, "qa" for a question answerer, "token" for a token classifier, else "sequence", by its class name (a
    model's type, or the `architectures` of a saved config)."""
    if BiaffineParser.__name__ in class_names:
        return "parse"
    if any(name.endswith("ForQuestionAnswering") for name in class_names):
        return "qa"
    return "token" if any(name.endswith("ForTokenClassification") for name in class_names) else "sequence"


def saved_kind(directory: Path) -> str:
    """The task kind of a saved model directory: a parser has its head's files beside the encoder."""
    if (Path(directory) / PARSER_CONFIG_FILE).is_file():
        return "parse"
    return task_kind_of(AutoConfig.from_pretrained(directory).architectures or [])


def loading_snippet(kind: str) -> list[str]:
    """How a card tells a user to load the student: plain transformers, nothing of this project
    (a parser: its encoder with plain transformers, the parser with the one class that adds the head)."""
    if kind == "parse":
        return [
            "```python",
            "from transformers import AutoModel, AutoTokenizer",
            "",
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/directory")',
            'encoder = AutoModel.from_pretrained("path/to/this/directory")  # the encoder alone',
            "",
            "# the parser: the encoder with its biaffine head (bistil_parser.json, bistil_parser.safetensors)",
            "from bistil_ray.method.parser import BiaffineParser",
            "",
            'parser = BiaffineParser.from_pretrained("path/to/this/directory").eval()',
            'heads, relations = parser.parse(tokenizer, ["The", "cat", "sleeps", "."])',
            "```",
        ]
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


def write_student_directory(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    directory: Path,
    *,
    label_names: list[str],
    extra_metadata: dict[str, Any] | None = None,
) -> None:
    """Fill the (empty, existing) `directory` with a Hugging Face model directory: weights,
    config with label names, tokenizer and `bistil_ray.json` metadata. (Its model card,
    `bistil_ray.model_card`, is written once the student is evaluated.)

    Sets the label names on `model.config` (they travel with the model from here on).
    `extra_metadata` must be JSON-serialisable (paths are written as strings).
    """
    metadata = dict(extra_metadata or {})
    _label_config(model, label_names)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str) + "\n", encoding="utf-8")


def load_exported(out_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The exported model (in eval mode) and its tokenizer, through the plain Auto classes: a
    sequence or a token classifier, as its config says; or a parser, where its head is saved beside."""
    out_dir = Path(out_dir)
    if not (out_dir / "config.json").is_file():
        raise UserInputError(f"{out_dir}: not an exported model directory (no config.json)")
    try:
        model = MODEL_CLASSES[saved_kind(out_dir)].from_pretrained(out_dir, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(out_dir)
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as error:  # a damaged or foreign directory
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserInputError(f"{out_dir}: cannot load the model: {reason}") from error
    return model.eval(), tokenizer
