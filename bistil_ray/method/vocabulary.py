"""Bilingual vocabulary trimming: keep the teacher tokens that the two languages actually use.

A massively multilingual vocabulary (250k pieces for XLM-R / e5) spends most of a small model's
parameters on tokens a given language pair never produces. We count token frequencies in a source
and a target corpus, keep every token whose relative frequency in either corpus reaches a threshold
(plus all special and added tokens), and renumber the kept tokens densely in ascending teacher-id
order: new id = position in `kept_ids`. The tokenizer and the embedding rows are trimmed to match, so
text made of kept tokens is tokenized into the same pieces and embedded into the same vectors.

A small corpus leaves out common tokens that it happens not to contain, and every such token becomes
the unknown token at inference time. Word-frequency lists of each language (words with their
relative frequency in large corpora) can count as further corpora: a list's token frequencies are
those of its words' pieces, weighted by the words' frequencies.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerFast

from bistil_ray.errors import UserInputError

KEPT_IDS_FILE = "kept_ids.json"
TOKENIZE_BATCH = 1000

# Constructor arguments that describe the untrimmed vocabulary (its files, or ids); the trimmed
# backend replaces them.
_VOCABULARY_KWARGS = (
    "vocab", "merges", "vocab_file", "merges_file", "tokenizer_file", "name_or_path", "added_tokens_decoder"
)


@dataclass
class BilingualVocabulary:
    kept_ids: list[int]  # teacher token ids kept, ascending; new id = position
    tokenizer: PreTrainedTokenizerFast  # the trimmed tokenizer (new ids)
    source_tokens: int  # corpus sizes in tokens, for reports
    target_tokens: int

    @property
    def size(self) -> int:
        return len(self.kept_ids)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        self.tokenizer.save_pretrained(directory)
        record = {"kept_ids": self.kept_ids, "source_tokens": self.source_tokens, "target_tokens": self.target_tokens}
        (directory / KEPT_IDS_FILE).write_text(json.dumps(record), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "BilingualVocabulary":
        directory = Path(directory)
        record_file = directory / KEPT_IDS_FILE
        if not record_file.is_file():
            raise UserInputError(f"{record_file}: no such file (not a saved bilingual vocabulary)")
        record = json.loads(record_file.read_text(encoding="utf-8"))
        return cls(
            kept_ids=record["kept_ids"],
            tokenizer=AutoTokenizer.from_pretrained(directory),
            source_tokens=record["source_tokens"],
            target_tokens=record["target_tokens"],
        )


def build_bilingual_vocabulary(
    tokenizer: PreTrainedTokenizerFast,
    source_texts: list[str],
    target_texts: list[str],
    threshold: float,
    word_lists: Iterable[dict[str, float]] = (),
) -> BilingualVocabulary:
    """Keep tokens with relative frequency >= `threshold` in the source or the target corpus, or in
    any of the word-frequency lists (word -> relative frequency)."""
    if not 0 < threshold < 1:
        raise UserInputError(f"vocabulary.threshold: must lie in (0, 1), got {threshold}")
    source_counts = count_tokens(tokenizer, source_texts, "source")
    target_counts = count_tokens(tokenizer, target_texts, "target")
    frequencies = [source_counts / source_counts.sum(), target_counts / target_counts.sum()]
    frequencies += [word_list_token_frequencies(tokenizer, words) for words in word_lists]
    keep = np.maximum.reduce(frequencies) >= threshold
    keep[always_kept_ids(tokenizer)] = True
    kept_ids = np.flatnonzero(keep).tolist()
    return BilingualVocabulary(
        kept_ids=kept_ids,
        tokenizer=trim_tokenizer(tokenizer, kept_ids),
        source_tokens=int(source_counts.sum()),
        target_tokens=int(target_counts.sum()),
    )


def untrimmed_vocabulary(tokenizer: PreTrainedTokenizerFast) -> BilingualVocabulary:
    """Every token of `tokenizer` with its own id: the vocabulary of a multilingual student, in the
    form the steps that take a trimmed one read. No corpus is counted, so its token counts are 0."""
    return BilingualVocabulary(
        kept_ids=list(range(len(tokenizer))), tokenizer=tokenizer, source_tokens=0, target_tokens=0
    )


def count_tokens(tokenizer: PreTrainedTokenizerFast, texts: list[str], corpus: str) -> np.ndarray:
    """Occurrences of every token id in `texts`, tokenized as the model sees them but without specials."""
    counts = np.zeros(len(tokenizer), dtype=np.int64)
    for start in range(0, len(texts), TOKENIZE_BATCH):
        encoded = tokenizer(texts[start : start + TOKENIZE_BATCH], add_special_tokens=False)["input_ids"]
        ids = np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int64)
        counts += np.bincount(ids, minlength=len(tokenizer))
    if counts.sum() == 0:
        raise UserInputError(f"{corpus} corpus: no tokens (empty or blank text)")
    return counts


def word_list_token_frequencies(tokenizer: PreTrainedTokenizerFast, words: dict[str, float]) -> np.ndarray:
    """Relative token frequencies implied by a word-frequency list: each word's pieces, weighted by
    the word's frequency."""
    counts = np.zeros(len(tokenizer), dtype=np.float64)
    vocabulary, weights = list(words), np.fromiter(words.values(), dtype=np.float64, count=len(words))
    for start in range(0, len(vocabulary), TOKENIZE_BATCH):
        encoded = tokenizer(vocabulary[start : start + TOKENIZE_BATCH], add_special_tokens=False)["input_ids"]
        ids = np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int64)
        piece_weights = np.repeat(weights[start : start + TOKENIZE_BATCH], [len(pieces) for pieces in encoded])
        counts += np.bincount(ids, weights=piece_weights, minlength=len(tokenizer))
    total = counts.sum()
    return counts / total if total > 0 else counts


def always_kept_ids(tokenizer: PreTrainedTokenizerFast) -> list[int]:
    return sorted(set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder))


# --- the tokenizer ---------------------------------------------------------------------------------


def trim_tokenizer(tokenizer: PreTrainedTokenizerFast, kept_ids: list[int]) -> PreTrainedTokenizerFast:
    """The same tokenizer restricted to `kept_ids`, renumbered by position; same class as the input."""
    new_id = _renumbering(kept_ids, len(tokenizer))
    missing = [token_id for token_id in always_kept_ids(tokenizer) if token_id not in new_id]
    if missing:
        raise UserInputError(f"kept_ids: special or added token ids {missing} must be kept")
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    _trim_model(state["model"], new_id)
    for added in state["added_tokens"]:
        added["id"] = new_id[added["id"]]
    if state.get("post_processor"):
        _remap_post_processor(state["post_processor"], new_id)
    if state.get("padding"):
        state["padding"]["pad_id"] = new_id[state["padding"]["pad_id"]]
    backend = Tokenizer.from_str(json.dumps(state))
    kwargs = {key: value for key, value in tokenizer.init_kwargs.items() if key not in _VOCABULARY_KWARGS}
    return type(tokenizer)(tokenizer_object=backend, **kwargs)


def _renumbering(kept_ids: list[int], vocabulary_size: int) -> dict[int, int]:
    if any(a >= b for a, b in zip(kept_ids, kept_ids[1:])):
        raise UserInputError("kept_ids: must be strictly ascending")
    if kept_ids and not 0 <= kept_ids[0] <= kept_ids[-1] < vocabulary_size:
        raise UserInputError(f"kept_ids: ids must lie in [0, {vocabulary_size})")
    return {old: new for new, old in enumerate(kept_ids)}


def _trim_model(model: dict[str, Any], new_id: dict[int, int]) -> None:
    """Edit the `tokenizers` model JSON in place: drop pieces not kept, renumber the rest."""
    kind = model.get("type")
    if kind in ("WordPiece", "WordLevel"):
        # Pieces are matched by string; the unknown token is named by string too.
        model["vocab"] = {piece: new_id[old] for piece, old in model["vocab"].items() if old in new_id}
    elif kind == "Unigram":
        # The id of a piece is its index in the [piece, score] list, so keeping ascending ids keeps order.
        model["vocab"] = [entry for old, entry in enumerate(model["vocab"]) if old in new_id]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[model["unk_id"]]
    else:
        raise UserInputError(f"tokenizer model {kind!r}: vocabulary trimming supports WordPiece and Unigram")


def _remap_post_processor(processor: dict[str, Any], new_id: dict[int, int]) -> None:
    kind = processor["type"]
    if kind == "TemplateProcessing":
        for special in processor["special_tokens"].values():
            special["ids"] = [new_id[i] for i in special["ids"]]
    elif kind in ("RobertaProcessing", "BertProcessing"):
        for name in ("sep", "cls"):
            token, old = processor[name]
            processor[name] = [token, new_id[old]]
    elif kind == "Sequence":
        for inner in processor["processors"]:
            _remap_post_processor(inner, new_id)


# --- the model ---------------------------------------------------------------------------------------


@torch.no_grad()
def trim_embeddings(model: PreTrainedModel, kept_ids: list[int]) -> None:
    """Keep rows `kept_ids` of every vocabulary-indexed parameter, in place, and renumber config ids."""
    embeddings = model.get_input_embeddings()
    new_id = _renumbering(kept_ids, embeddings.weight.shape[0])
    # Check every special id before changing anything, so a bad `kept_ids` leaves the model intact.
    config_ids = {
        name: _new_special_id(new_id, getattr(model.config, name), name)
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id")
        if getattr(model.config, name, None) is not None
    }
    padding_idx = embeddings.padding_idx
    if padding_idx is not None:
        padding_idx = _new_special_id(new_id, padding_idx, "padding_idx")

    index = torch.tensor(kept_ids, device=embeddings.weight.device)
    for parameter in _vocabulary_parameters(model, embeddings.weight.shape[0]):
        # Replacing `.data` keeps tied parameters (embeddings = MLM decoder, decoder bias = head bias) tied.
        parameter.data = parameter.data.index_select(0, index).clone()
    embeddings.num_embeddings = len(kept_ids)
    embeddings.padding_idx = padding_idx
    output = model.get_output_embeddings()
    if output is not None:
        output.out_features = len(kept_ids)
    model.config.vocab_size = len(kept_ids)
    for name, value in config_ids.items():
        setattr(model.config, name, value)


def _vocabulary_modules(model: PreTrainedModel) -> list[nn.Module]:
    """The input embeddings, the MLM output layer if any, and the head that holds it (its separate bias)."""
    modules = [model.get_input_embeddings()]
    output = model.get_output_embeddings()
    if output is not None:
        modules.append(output)
        modules += [module for module in model.modules() if any(child is output for child in module.children())]
    return modules


def _vocabulary_parameters(model: PreTrainedModel, vocabulary_size: int) -> list[nn.Parameter]:
    unique: dict[int, nn.Parameter] = {}
    for module in _vocabulary_modules(model):
        for parameter in module.parameters(recurse=False):
            if parameter.shape[0] == vocabulary_size:
                unique[id(parameter)] = parameter
    return list(unique.values())


def _new_special_id(new_id: dict[int, int], old: int, name: str) -> int:
    if old not in new_id:
        raise UserInputError(f"kept_ids: the model's {name} ({old}) is not kept")
    return new_id[old]
