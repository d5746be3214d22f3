"""A classifier that answers requests: a batch of texts (a sequence task) or of pre-split sentences
(a token task) in, a label or one tag per word out, each with its probability. Plain PyTorch (or an
ONNX Runtime session) behind it; what one language's deployment of `bistil_ray.serve` holds.

The labels are what `evaluation.predict` gives offline for the same inputs: the same tokenisation
(truncation at `max_length`, a word read at its first sub-word, a word cut off read as "O" or id 0)
and the argmax of the same logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from bistil_ray.errors import UserInputError
from bistil_ray.method.batching import encode_words, first_subword_positions
from bistil_ray.method.evaluation import evaluation_mode
from bistil_ray.method.export import load_exported, saved_kind
from bistil_ray.method.onnx_export import INT8_FILE, ONNX_DIR


@dataclass(frozen=True)
class Prediction:
    label: str | list[str]  # the text's label, or one tag per word
    score: float | list[float]  # its probability, or each tag's


class Predictor:
    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, label_names: list[str], kind: str,
                 max_length: int):
        if kind not in ("sequence", "token"):
            raise UserInputError(f"a {kind} model: serving answers sequence and token classification only")
        self.model, self.tokenizer, self.label_names = model, tokenizer, label_names
        self.kind, self.max_length = kind, max_length
        self.outside = label_names.index("O") if "O" in label_names else 0

    @classmethod
    def load(cls, directory: Path, *, max_length: int, onnx: bool = False) -> "Predictor":
        """The exported model in `directory`; with `onnx`, its int8 ONNX graph where one was exported
        (`export.onnx`), on ONNX Runtime."""
        model, tokenizer = load_exported(directory)
        kind, label_names = saved_kind(directory), [model.config.id2label[i] for i in range(model.config.num_labels)]
        graph = Path(directory) / ONNX_DIR / INT8_FILE
        if onnx and graph.is_file():
            from bistil_ray.method.onnx_export import OnnxClassifier

            model = OnnxClassifier(graph)
        return cls(model, tokenizer, label_names, kind, max_length)

    def __call__(self, inputs: list[str] | list[list[str]]) -> list[Prediction]:
        if self.kind == "sequence":
            encoded = self.tokenizer(inputs, truncation=True, max_length=self.max_length)
        else:
            encoded = encode_words(self.tokenizer, inputs, self.max_length)
        batch = self.tokenizer.pad(
            [{key: encoded[key][i] for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded}
             for i in range(len(inputs))],
            return_tensors="pt",
        )
        with torch.inference_mode(), evaluation_mode(self.model):
            probabilities = self.model(**batch).logits.float().softmax(dim=-1)
        scores, labels = probabilities.max(dim=-1)
        if self.kind == "sequence":
            return [Prediction(self.label_names[int(label)], float(score)) for score, label in zip(scores, labels)]
        predictions = []
        for index, words in enumerate(inputs):
            tags, tag_scores = [self.label_names[self.outside]] * len(words), [0.0] * len(words)
            for position, word in enumerate(first_subword_positions(encoded, index)):
                if word is not None:
                    tags[word] = self.label_names[int(labels[index, position])]
                    tag_scores[word] = float(scores[index, position])
            predictions.append(Prediction(tags, tag_scores))
        return predictions
