"""Tokenised examples, length-bucketed batches with dynamic padding, resumable by step.

The batch of step `s` is a pure function of (seed, s, rank, world size): a loop that resumes at step
`s` sees exactly the batches it would have seen, with no sampler state to save. Examples of similar
length share a batch (padding waste stays small) while the order of batches is still shuffled.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from bistil_ray.data.qa import ANSWER_STARTS, ANSWER_TEXTS, CONTEXT, QUESTION
from bistil_ray.data.tasks import HEADS, TAGS
from bistil_ray.method.losses import IGNORE_INDEX

Example = dict[str, list[int] | int]


def tokenize_texts(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    *,
    text_pairs: Sequence[str] | None = None,
    labels: Sequence[int] | None = None,
) -> list[Example]:
    """Unpadded examples: input_ids (and token_type_ids where the model has them), label."""
    encoded = tokenizer(
        list(texts),
        list(text_pairs) if text_pairs is not None else None,
        truncation=True,
        max_length=max_length,
        padding=False,
        return_attention_mask=False,
    )
    examples: list[Example] = []
    for index in range(len(texts)):
        example: Example = {"input_ids": encoded["input_ids"][index]}
        if "token_type_ids" in encoded:
            example["token_type_ids"] = encoded["token_type_ids"][index]
        if labels is not None:
            example["labels"] = int(labels[index])
        examples.append(example)
    return examples


# What a sentencepiece or byte-level BPE tokenizer marks a word's start with. A word it cannot join to
# a following piece (most Chinese and Japanese words: the training text had no spaces before them)
# starts with this marker alone, a piece shared by every such word.
WORD_START_MARKERS = ("\u2581", "\u0120")  # "▁" (sentencepiece), "Ġ" (byte-level BPE)


def first_subword_positions(encoded, index: int) -> list[int | None]:
    """For each sub-word position of example `index`, the word whose tag sits there, or None (special
    tokens and a word's other pieces). A word's tag sits on its first piece that carries text: the first
    sub-word, unless that is a bare word-start marker, which says nothing about the word."""
    positions: list[int | None] = []
    tokens = encoded.tokens(index)
    tagged: set[int] = set()
    word_ids = encoded.word_ids(index)
    for position, word in enumerate(word_ids):
        bare_marker = tokens[position] in WORD_START_MARKERS
        last_piece = position + 1 == len(word_ids) or word_ids[position + 1] != word
        if word is None or word in tagged or (bare_marker and not last_piece):
            positions.append(None)
        else:
            positions.append(word)
            tagged.add(word)
    return positions


def encode_words(tokenizer: PreTrainedTokenizerBase, words: Sequence[Sequence[str]], max_length: int):
    """Pre-split sentences through the tokenizer (a fast one: only those know which word each
    sub-word came from)."""
    if not tokenizer.is_fast:
        raise ValueError(f"token tasks need a fast tokenizer (got {type(tokenizer).__name__})")
    return tokenizer([list(sentence) for sentence in words], is_split_into_words=True, truncation=True,
                     max_length=max_length, padding=False, return_attention_mask=False)  # fmt: skip


def encoded_example(encoded, index: int) -> Example:
    """Example `index` of a tokenizer's output: its input_ids, and token_type_ids where the model has them."""
    example: Example = {"input_ids": encoded["input_ids"][index]}
    if "token_type_ids" in encoded:
        example["token_type_ids"] = encoded["token_type_ids"][index]
    return example


def tokenize_tagged(
    tokenizer: PreTrainedTokenizerBase, words: Sequence[Sequence[str]], tags: Sequence[Sequence[int]], max_length: int
) -> list[Example]:
    """Unpadded examples of a token task: `labels` holds each word's tag on its first sub-word that
    carries text (`first_subword_positions`) and IGNORE_INDEX everywhere else (special tokens, a word's
    other pieces); words cut off by `max_length` have no position and no label."""
    encoded = encode_words(tokenizer, words, max_length)
    examples: list[Example] = []
    for index in range(len(words)):
        example = encoded_example(encoded, index)
        positions = first_subword_positions(encoded, index)
        example["labels"] = [IGNORE_INDEX if word is None else int(tags[index][word]) for word in positions]
        examples.append(example)
    return examples


def tokenize_parsed(
    tokenizer: PreTrainedTokenizerBase,
    words: Sequence[Sequence[str]],
    heads: Sequence[Sequence[int]] | None,
    relations: Sequence[Sequence[int]] | None,
    max_length: int,
) -> list[Example]:
    """Unpadded examples of a parse task: `word_starts` holds each word's position (as a token task
    places its tag), `heads` each word's head (0 the root) and `labels` its relation id. Words cut off
    by `max_length` are left out, and a kept word whose head was cut off has neither (IGNORE_INDEX).
    Without `heads` (text to parse) only the positions are given."""
    encoded = encode_words(tokenizer, words, max_length)
    examples: list[Example] = []
    for index in range(len(words)):
        example = encoded_example(encoded, index)
        starts = {word: position for position, word in enumerate(first_subword_positions(encoded, index)) if word is not None}
        example["word_starts"] = [starts[word] for word in range(len(starts))]
        if heads is not None and relations is not None:
            kept = len(starts)
            known = [0 <= head <= kept for head in heads[index][:kept]]
            example["heads"] = [int(head) if ok else IGNORE_INDEX for head, ok in zip(heads[index], known)]
            example["labels"] = [int(label) if ok else IGNORE_INDEX for label, ok in zip(relations[index], known)]
        examples.append(example)
    return examples


# Windows over a long context overlap by this share of their length, so that an answer cut by one
# window's end is whole in the next (Hugging Face's recipe: 128 of 384 tokens).
QA_WINDOW_OVERLAP = 0.25


def encode_questions(tokenizer: PreTrainedTokenizerBase, questions: Sequence[str], contexts: Sequence[str], max_length: int):
    """Question and context pairs as windows of at most `max_length` tokens over each context
    (`overflow_to_sample_mapping` says whose), with each token's character span."""
    if not tokenizer.is_fast:
        raise ValueError(f"qa tasks need a fast tokenizer (got {type(tokenizer).__name__})")
    return tokenizer(list(questions), list(contexts), truncation="only_second", max_length=max_length,
                     stride=int(max_length * QA_WINDOW_OVERLAP), return_overflowing_tokens=True,
                     return_offsets_mapping=True, padding=False, return_attention_mask=False)  # fmt: skip


def context_offsets(encoded, window: int) -> list[tuple[int, int] | None]:
    """Each token's character span in its context, None for the question and special tokens."""
    sequence_ids = encoded.sequence_ids(window)
    return [tuple(span) if sequence_ids[position] == 1 else None for position, span in enumerate(encoded["offset_mapping"][window])]


def tokenize_questions(
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    contexts: Sequence[str],
    answer_starts: Sequence[Sequence[int]],
    answer_texts: Sequence[Sequence[str]],
    max_length: int,
) -> list[Example]:
    """Unpadded windows of a QA task: `start_positions` and `end_positions` mark the first answer's
    first and last token where the window holds it whole, else the first token ([CLS]: no answer here)."""
    encoded = encode_questions(tokenizer, questions, contexts, max_length)
    examples: list[Example] = []
    for window in range(len(encoded["input_ids"])):
        example = encoded_example(encoded, window)
        question = encoded["overflow_to_sample_mapping"][window]
        first, last = answer_starts[question][0], answer_starts[question][0] + len(answer_texts[question][0])
        spans = context_offsets(encoded, window)
        inside = [position for position, span in enumerate(spans) if span is not None]
        start = end = 0
        if inside and spans[inside[0]][0] <= first and spans[inside[-1]][1] >= last:
            start = next(position for position in inside if spans[position][1] > first)
            end = next(position for position in reversed(inside) if spans[position][0] < last)
        example["start_positions"], example["end_positions"] = start, end
        examples.append(example)
    return examples


def tokenize_dataset(tokenizer, dataset, text_fields: Sequence[str], max_length: int) -> list[Example]:
    """Examples of a task dataset (columns: text fields and `label`; a token task's: `tokens`, `tags`;
    a parse task's: `tokens`, `heads`, `tags`; a qa task's: windows of `question` and `context`)."""
    if ANSWER_STARTS in dataset.column_names:
        return tokenize_questions(tokenizer, dataset[QUESTION], dataset[CONTEXT], dataset[ANSWER_STARTS], dataset[ANSWER_TEXTS], max_length)
    if HEADS in dataset.column_names:
        return tokenize_parsed(tokenizer, dataset[text_fields[0]], dataset[HEADS], dataset[TAGS], max_length)
    if TAGS in dataset.column_names:
        return tokenize_tagged(tokenizer, dataset[text_fields[0]], dataset[TAGS], max_length)
    pairs = dataset[text_fields[1]] if len(text_fields) > 1 else None
    return tokenize_texts(tokenizer, dataset[text_fields[0]], max_length, text_pairs=pairs, labels=dataset["label"])


def collate(examples: Sequence[Example], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest example of the batch (dynamic padding)."""
    width = max(len(example["input_ids"]) for example in examples)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    token_type_ids = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        length = len(example["input_ids"])
        input_ids[row, :length] = torch.tensor(example["input_ids"])
        attention_mask[row, :length] = 1
        if "token_type_ids" in example:
            token_type_ids[row, :length] = torch.tensor(example["token_type_ids"])
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if "token_type_ids" in examples[0]:
        batch["token_type_ids"] = token_type_ids
    for key in ("labels", "start_positions", "end_positions"):  # one per example
        if key in examples[0] and not isinstance(examples[0][key], list):
            batch[key] = torch.tensor([example[key] for example in examples], dtype=torch.long)
    # Lists per sub-word (a token task's labels) or per word (a parse task's), padded to the longest.
    for key, padding in LIST_PADDING.items():
        if key in examples[0] and isinstance(examples[0][key], list):
            padded = torch.full((len(examples), max(len(example[key]) for example in examples)), padding, dtype=torch.long)
            for row, example in enumerate(examples):
                padded[row, : len(example[key])] = torch.tensor(example[key], dtype=torch.long)
            batch[key] = padded
    return batch


# 0 is never a word's start (the first position is a special token), so it marks "no word".
LIST_PADDING = {"labels": IGNORE_INDEX, "heads": IGNORE_INDEX, "word_starts": 0}


@dataclass
class BucketedBatches:
    """An endless, deterministic stream of length-bucketed batches over `examples`.

    Each epoch shuffles the examples, sorts windows of `bucket_size` batches by length, cuts them
    into batches and shuffles the batches. With several data-parallel ranks, rank r takes every
    world_size-th batch of the epoch, so ranks see disjoint data and the same number of steps.
    """

    examples: Sequence[Example]
    batch_size: int
    pad_token_id: int
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    bucket_size: int = 50

    def __post_init__(self) -> None:
        if len(self.examples) < self.batch_size * self.world_size:
            raise ValueError(
                f"{len(self.examples)} examples cannot fill one batch of {self.batch_size} on each of {self.world_size} ranks"
            )
        self._epoch_cache: tuple[int, list[list[int]]] | None = None

    @property
    def steps_per_epoch(self) -> int:
        return len(self.examples) // (self.batch_size * self.world_size)

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        if self._epoch_cache is not None and self._epoch_cache[0] == epoch:
            return self._epoch_cache[1]
        rng = random.Random(self.seed * 1_000_003 + epoch)
        order = list(range(len(self.examples)))
        rng.shuffle(order)
        window = self.batch_size * self.bucket_size
        batches: list[list[int]] = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: len(self.examples[i]["input_ids"]))
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        batches = [batch for batch in batches if len(batch) == self.batch_size]
        rng.shuffle(batches)
        mine = batches[self.rank :: self.world_size][: self.steps_per_epoch]
        self._epoch_cache = (epoch, mine)
        return mine

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        epoch, position = divmod(step, self.steps_per_epoch)
        indices = self._epoch_batches(epoch)[position]
        return collate([self.examples[i] for i in indices], self.pad_token_id)


def validation_sample(examples: Sequence[Example], size: int | None) -> Sequence[Example]:
    """At most `size` of `examples`, drawn once with a fixed seed (the same sample for every run and
    seed, so that checkpoints are chosen on the same examples), in their original order."""
    if size is None or len(examples) <= size:
        return examples
    kept = sorted(random.Random(0).sample(range(len(examples)), size))
    return [examples[index] for index in kept]


def fixed_batches(examples: Sequence[Example], batch_size: int, pad_token_id: int) -> list[dict[str, torch.Tensor]]:
    """Validation batches: every example once, sorted by length, in order."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    return [
        collate([examples[i] for i in order[start : start + batch_size]], pad_token_id)
        for start in range(0, len(order), batch_size)
    ]
