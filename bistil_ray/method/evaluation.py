"""Zero-shot evaluation of sequence and token classifiers and of parsers, and efficiency measured
against the teacher.

Scores: accuracy and macro-F1 for sequence tasks; for token tasks, entity-level F1 (seqeval, exact
spans, micro-averaged) where the tags are BIO, else token accuracy, over every word of the data; for
parse tasks, LAS and UAS over every word (CoNLL 2018); for qa tasks, F1 and exact match of each
answer (SQuAD's), chosen over all windows of its context.
Efficiency: parameter count, size on disk, batch-1 latency and batch-32 throughput, all models
timed in one process, interleaved, on the same texts, so that background load and CPU frequency
changes hit teacher and student alike. Throughput runs over up to 256 texts in consecutive batches
of 32: a single batch pads to its one longest text, and how a trimmed vocabulary splits that one
text would then decide the comparison.
"""

from __future__ import annotations

import re
import statistics
import time
import unicodedata
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from datasets import Dataset
from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

from bistil_ray.data.qa import ANSWER_STARTS, ANSWER_TEXTS
from bistil_ray.data.tasks import HEADS, TAGS
from bistil_ray.errors import UserInputError
from bistil_ray.method.batching import collate, context_offsets, encode_questions, encode_words, first_subword_positions, tokenize_parsed
from bistil_ray.method.parser import BiaffineParser, predicted_parses, tree_parses
from bistil_ray.method.training import autocast

THROUGHPUT_BATCH_SIZE = 32
THROUGHPUT_SAMPLE_SIZE = 256
LATENCY_SAMPLE_SIZE = 16
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")  # of a tokenizer's output (not its word ids)

# What a user ships to run a saved model; model cards and run metadata do not count.
WEIGHT_SUFFIXES = (".safetensors", ".bin")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
)


# --- scores ------------------------------------------------------------------------------------------


def classification_scores(predictions: np.ndarray, labels: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1.

    Macro-F1 averages per-label F1 = 2TP / (2TP + FP + FN) over the labels that occur in `labels`
    or in `predictions` (the union), like scikit-learn's `f1_score(average="macro")`: a gold label
    the model never predicts counts as F1 0, a label that is in neither is left out.
    """
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.shape[0]} predictions for {labels.shape[0]} labels")
    if labels.size == 0:
        raise UserInputError("label: no examples to score")
    for name, values in (("label", labels), ("prediction", predictions)):
        if values.min() < 0 or values.max() >= num_labels:
            raise UserInputError(f"{name}: values must lie in [0, {num_labels}), got {values.min()}..{values.max()}")
    true_positives = np.bincount(labels[predictions == labels], minlength=num_labels)
    predicted = np.bincount(predictions, minlength=num_labels)
    gold = np.bincount(labels, minlength=num_labels)
    present = (predicted + gold) > 0
    f1 = 2 * true_positives[present] / (predicted[present] + gold[present])
    return {"accuracy": float(np.mean(predictions == labels)), "macro_f1": float(f1.mean())}


def is_bio(label_names: Sequence[str]) -> bool:
    """Tags of an entity scheme (O, B-X, I-X): scored by entity F1 rather than per word."""
    return any(name.startswith("B-") for name in label_names) and all(
        name == "O" or name.startswith(("B-", "I-")) for name in label_names
    )


def token_scores(predictions: Sequence[np.ndarray], labels: Sequence[np.ndarray], label_names: Sequence[str]) -> dict[str, float]:
    """Token accuracy over every word, and entity-level F1 (seqeval) where the tags are BIO."""
    if len(predictions) != len(labels) or any(len(p) != len(g) for p, g in zip(predictions, labels)):
        raise ValueError("predictions and labels differ in sentences or words")
    if not labels or not sum(len(gold) for gold in labels):
        raise UserInputError("tags: no words to score")
    flat_predictions, flat_labels = np.concatenate(predictions), np.concatenate(labels)
    scores = {"token_accuracy": float(np.mean(flat_predictions == flat_labels))}
    if is_bio(label_names):
        from seqeval.metrics import f1_score

        names = list(label_names)
        scores["entity_f1"] = float(
            f1_score([[names[i] for i in gold] for gold in labels], [[names[i] for i in guess] for guess in predictions], zero_division=0)
        )
    return scores


def parse_scores(predictions: Sequence[np.ndarray], gold: Sequence[np.ndarray]) -> dict[str, float]:
    """UAS and LAS as the CoNLL 2018 shared task defines them, over every word (punctuation included):
    the share of words with the right head, and with the right head and universal relation. Each
    sentence is a (words, 2) array of heads and relation ids."""
    if len(predictions) != len(gold) or any(p.shape != g.shape for p, g in zip(predictions, gold)):
        raise ValueError("predictions and gold trees differ in sentences or words")
    if not gold or not sum(len(tree) for tree in gold):
        raise UserInputError("heads: no words to score")
    predicted, wanted = np.concatenate(predictions), np.concatenate(gold)
    right_head = predicted[:, 0] == wanted[:, 0]
    return {"uas": float(right_head.mean()), "las": float((right_head & (predicted[:, 1] == wanted[:, 1])).mean())}


def normalized_answer(text: str) -> list[str]:
    """SQuAD's normalisation (lower case, no punctuation, no English articles), split into words; text
    in a script written without spaces (CJK) is split into characters, as MLQA scores it."""
    text = "".join(" " if unicodedata.category(char).startswith("P") else char for char in text.lower())
    words = [word for word in text.split() if word not in ("a", "an", "the")]
    return [piece for word in words for piece in (list(word) if _CJK.search(word) else [word])]


_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


def qa_scores(predictions: Sequence[str], gold: Sequence[Sequence[str]]) -> dict[str, float]:
    """Exact match and F1 of each predicted answer against its best gold answer (SQuAD's definitions,
    with `normalized_answer`), mean over questions."""
    if len(predictions) != len(gold):
        raise ValueError(f"{len(predictions)} answers for {len(gold)} questions")
    if not gold:
        raise UserInputError("answers: no questions to score")

    def f1(predicted: list[str], wanted: list[str]) -> float:
        common = sum((Counter(predicted) & Counter(wanted)).values())
        if common == 0:
            return float(predicted == wanted)
        precision, recall = common / len(predicted), common / len(wanted)
        return 2 * precision * recall / (precision + recall)

    exact, overlap = [], []
    for predicted, answers in zip(predictions, gold):
        mine = normalized_answer(predicted)
        exact.append(max(float(mine == normalized_answer(answer)) for answer in answers))
        overlap.append(max(f1(mine, normalized_answer(answer)) for answer in answers))
    return {"exact_match": float(np.mean(exact)), "f1": float(np.mean(overlap))}


def task_scores(predictions, labels, label_names: Sequence[str]) -> dict[str, Any]:
    """The scores of a task and its `score`: what the results and the objective hold, named by
    `metric`. Predictions per sentence (a list of arrays, one id per word) are a token task's; one
    (head, relation) row per word, a parse task's."""
    if isinstance(predictions, list) and predictions and isinstance(predictions[0], str):
        scores = qa_scores(predictions, labels)
        return {**scores, "score": scores["f1"], "metric": "f1"}
    if isinstance(predictions, np.ndarray) and predictions.ndim == 2:
        # A qa task's windows while it trains: (start, end) each, right only together. Answers are
        # scored by F1 once a model is built (`predict` on the questions).
        accuracy = float(np.mean((predictions == labels).all(axis=1)))
        return {"span_accuracy": accuracy, "score": accuracy, "metric": "span_accuracy"}
    if isinstance(predictions, list) and predictions and predictions[0].ndim == 2:
        scores = parse_scores(predictions, labels)
        return {**scores, "score": scores["las"], "metric": "las"}
    if isinstance(predictions, list):
        scores: dict[str, Any] = token_scores(predictions, labels, label_names)
        metric = "entity_f1" if "entity_f1" in scores else "token_accuracy"
    else:
        scores, metric = classification_scores(predictions, labels, len(label_names)), "accuracy"
    return {**scores, "score": scores[metric], "metric": metric}


# --- prediction ------------------------------------------------------------------------------------


@contextmanager
def evaluation_mode(model: torch.nn.Module) -> Iterator[None]:
    """`model.eval()` for the block, then back to whatever mode the caller had (e.g. mid-training)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _columns(dataset: Dataset, text_fields: list[str]) -> list[list[str]]:
    missing = [field for field in text_fields if field not in dataset.column_names]
    if missing:
        raise UserInputError(f"text field {missing[0]!r}: not a column of the dataset ({dataset.column_names})")
    return [list(dataset[field]) for field in text_fields]


@torch.inference_mode()
def predict(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    text_fields: list[str],
    *,
    batch_size: int = 64,
    max_length: int = 128,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    trees: bool = False,
) -> np.ndarray | list[np.ndarray] | list[str]:
    """Predicted label ids in dataset order, computed on `device` (matrix products in `dtype`); for a
    token task (a dataset of pre-split `tokens`), one array per sentence with an id per word, read at
    each word's first sub-word (a word cut off by `max_length` gets the "O" tag, or id 0); for a
    parser, (head, relation) per word (`trees`: well-formed trees); for a qa task, each answer.

    Examples are batched longest first so each batch pads to nearly its own length, then the
    predictions are put back in the original order.
    """
    columns = _columns(dataset, text_fields)
    token_task = bool(columns[0]) and isinstance(columns[0][0], list)  # pre-split words
    if len(dataset) == 0:
        return np.zeros(0, dtype=np.int64)
    if isinstance(model, BiaffineParser):
        return _predict_parses(model, tokenizer, columns[0], batch_size, max_length, device, dtype, trees)
    if ANSWER_STARTS in dataset.column_names:
        return _predict_answers(model, tokenizer, columns[0], columns[1], batch_size, max_length, device, dtype)
    if token_task:
        encoded = encode_words(tokenizer, columns[0], max_length)
    else:
        encoded = tokenizer(*columns, truncation=True, max_length=max_length)
    lengths = np.array([len(ids) for ids in encoded["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    predictions: list = [None] * len(dataset)
    model.to(device)
    with evaluation_mode(model), autocast(torch.device(device), dtype):
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            rows = [{key: encoded[key][i] for key in MODEL_INPUTS if key in encoded} for i in indices]
            batch = tokenizer.pad(rows, return_tensors="pt")
            guesses = model(**batch.to(device)).logits.argmax(dim=-1).cpu().numpy()
            for row, index in enumerate(indices):
                predictions[index] = guesses[row]
    if not token_task:
        return np.asarray(predictions, dtype=np.int64)
    fallback = getattr(getattr(model, "config", None), "label2id", {}).get("O", 0)  # an ONNX session has no config
    words = columns[0]
    per_word = []
    for index, guesses in enumerate(predictions):
        sentence = np.full(len(words[index]), fallback, dtype=np.int64)
        for position, word in enumerate(first_subword_positions(encoded, index)):
            if word is not None:
                sentence[word] = guesses[position]
        per_word.append(sentence)
    return per_word


def _predict_parses(parser: BiaffineParser, tokenizer, words: list[list[str]], batch_size: int, max_length: int,
                    device: str | torch.device, dtype: torch.dtype, trees: bool) -> list[np.ndarray]:  # fmt: skip
    """Per sentence, (words, 2): each word's predicted head and relation id (with `trees`, heads that
    form a well-formed tree); a word cut off by `max_length` gets the root and relation 0."""
    examples = tokenize_parsed(tokenizer, words, None, None, max_length)
    order = np.argsort([-len(example["input_ids"]) for example in examples], kind="stable")
    parses: list = [None] * len(words)
    parser.to(device)
    with evaluation_mode(parser), autocast(torch.device(device), dtype):
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            batch = collate([examples[i] for i in indices], tokenizer.pad_token_id)
            inputs = {key: value.to(device) for key, value in batch.items()}
            out = parser(**inputs)
            if trees:
                out = tree_parses(parser, inputs, out)
            for index, parse in zip(indices, predicted_parses(out)):
                whole = np.zeros((len(words[index]), 2), dtype=np.int64)
                whole[: len(parse)] = parse
                parses[index] = whole
    return parses


# Answers are chosen among the best starts and ends of each window, at most this many tokens long
# (Hugging Face's question-answering recipe).
ANSWER_CANDIDATES, MAX_ANSWER_TOKENS = 20, 30


def _predict_answers(model, tokenizer, questions: list[str], contexts: list[str], batch_size: int, max_length: int,
                     device: str | torch.device, dtype: torch.dtype) -> list[str]:  # fmt: skip
    """Each question's answer: the context span whose start and end scores sum highest over all its
    windows (an empty answer where no window holds a span)."""
    encoded = encode_questions(tokenizer, questions, contexts, max_length)
    best: list[tuple[float, str]] = [(-float("inf"), "")] * len(questions)
    model.to(device)
    with evaluation_mode(model), autocast(torch.device(device), dtype):
        for start in range(0, len(encoded["input_ids"]), batch_size):
            windows = list(range(start, min(start + batch_size, len(encoded["input_ids"]))))
            batch = tokenizer.pad([{key: encoded[key][w] for key in MODEL_INPUTS if key in encoded} for w in windows], return_tensors="pt")
            out = model(**batch.to(device))
            for row, window in enumerate(windows):
                question, spans = encoded["overflow_to_sample_mapping"][window], context_offsets(encoded, window)
                starts, ends = out.start_logits[row].float().cpu().numpy(), out.end_logits[row].float().cpu().numpy()
                for first in np.argsort(-starts)[:ANSWER_CANDIDATES]:
                    for last in np.argsort(-ends)[:ANSWER_CANDIDATES]:
                        if first >= len(spans) or last >= len(spans) or spans[first] is None or spans[last] is None:
                            continue
                        if last < first or last - first + 1 > MAX_ANSWER_TOKENS:
                            continue
                        score = float(starts[first] + ends[last])
                        if score > best[question][0]:
                            best[question] = (score, contexts[question][spans[first][0] : spans[last][1]])
    return [answer for _, answer in best]


def gold_labels(dataset: Dataset) -> np.ndarray | list[np.ndarray] | list[list[str]]:
    """The dataset's gold ids (a qa task's answer texts) in the shape `predict` answers in."""
    if ANSWER_TEXTS in dataset.column_names:
        return [list(answers) for answers in dataset[ANSWER_TEXTS]]
    if HEADS in dataset.column_names:
        return [np.stack([heads, tags], axis=1).astype(np.int64) for heads, tags in zip(dataset[HEADS], dataset[TAGS])]
    if TAGS in dataset.column_names:
        return [np.asarray(tags, dtype=np.int64) for tags in dataset[TAGS]]
    if "label" not in dataset.column_names:
        raise UserInputError(f"label: not a column of the dataset ({dataset.column_names})")
    return np.asarray(dataset["label"])


def evaluate_task(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    text_fields: list[str],
    label_names: Sequence[str],
    **predict_options,
) -> dict[str, Any]:
    """`task_scores` of `model` on `dataset` (gold ids in its `label` column, or `tags` per word)."""
    labels = gold_labels(dataset)
    return task_scores(predict(model, tokenizer, dataset, text_fields, **predict_options), labels, label_names)


# --- efficiency ------------------------------------------------------------------------------------


@dataclass
class Efficiency:
    parameters: int
    bytes_on_disk: int | None
    latency_ms_batch1: float
    throughput_batch32: float  # sequences per second


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied weights counted once)."""
    return sum(parameter.numel() for parameter in model.parameters())


def directory_bytes(path: Path) -> int:
    """Bytes of the weight, config and tokenizer files of a saved model directory."""
    path = Path(path)
    if not path.is_dir():
        raise UserInputError(f"{path}: not a model directory")
    return sum(
        entry.stat().st_size
        for entry in path.iterdir()
        if entry.is_file()
        and (entry.suffix in WEIGHT_SUFFIXES or entry.name in TOKENIZER_FILES or entry.name == "config.json")
    )


def throughput_batches(texts: list[str]) -> list[list[str]]:
    """The throughput sample: the first THROUGHPUT_SAMPLE_SIZE texts in consecutive full batches of
    THROUGHPUT_BATCH_SIZE, in the order given (fewer than one batch of texts are cycled to fill one)."""
    batches = len(texts[:THROUGHPUT_SAMPLE_SIZE]) // THROUGHPUT_BATCH_SIZE
    if batches == 0:
        return [[texts[i % len(texts)] for i in range(THROUGHPUT_BATCH_SIZE)]]
    return [texts[batch * THROUGHPUT_BATCH_SIZE : (batch + 1) * THROUGHPUT_BATCH_SIZE] for batch in range(batches)]


@dataclass
class _TimingInputs:
    single: list[BatchEncoding]  # one text each, the latency sample
    batches: list[BatchEncoding]  # the throughput sample, each batch padded to its longest text


def _timing_inputs(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int, device: str | torch.device
) -> _TimingInputs:
    def encode(sample: list[str]) -> BatchEncoding:
        return tokenizer(sample, padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device)

    return _TimingInputs(
        single=[encode([text]) for text in texts[:LATENCY_SAMPLE_SIZE]],
        batches=[encode(batch) for batch in throughput_batches(texts)],
    )


def _synchronize(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _timed_forward(model: PreTrainedModel, inputs: BatchEncoding, device: str | torch.device) -> float:
    _synchronize(device)
    start = time.perf_counter()
    model(**inputs)
    _synchronize(device)
    return time.perf_counter() - start


@torch.inference_mode()
def measure_efficiency(
    models: dict[str, tuple[PreTrainedModel, PreTrainedTokenizerBase]],
    texts: list[str],
    *,
    max_length: int = 128,
    warmup: int = 3,
    repeats: int = 5,
    device: str | torch.device = "cpu",
    seconds_budget: float = 3.0,
    directories: dict[str, Path] | None = None,
) -> dict[str, Efficiency]:
    """Time every model on the same texts, each tokenized by the model's own tokenizer.

    After `warmup` untimed passes per model, each round runs the latency sample (the first 16
    texts) one text at a time, then the throughput sample (`throughput_batches`), every text or
    batch through each model in turn, so that a slow second on a shared machine hits all models
    alike. Rounds stop after `repeats`, or earlier once about `seconds_budget` seconds per model
    have been spent, warm-up included (at least one round always runs). Latency is the median
    batch-1 forward time; throughput is the sample's texts over its time, the median over rounds.
    Tokenization is not timed. `directories` maps a model name to its saved directory for
    `bytes_on_disk`.
    """
    if not texts:
        raise UserInputError("texts: need at least one text to time")
    inputs = {name: _timing_inputs(tokenizer, texts, max_length, device) for name, (_, tokenizer) in models.items()}
    single_times: dict[str, list[float]] = {name: [] for name in models}
    sample_times: dict[str, list[float]] = {name: [] for name in models}
    deadline = time.perf_counter() + seconds_budget * len(models)
    with ExitStack() as modes:
        for model, _ in models.values():
            modes.enter_context(evaluation_mode(model.to(device)))
        for name, (model, _) in models.items():
            for _ in range(warmup):
                model(**inputs[name].single[0])
                model(**inputs[name].batches[0])
        sample = next(iter(inputs.values()))  # every model has the same number of texts and batches
        for _ in range(repeats):
            for text in range(len(sample.single)):
                for name, (model, _) in models.items():
                    single_times[name].append(_timed_forward(model, inputs[name].single[text], device))
            round_times = dict.fromkeys(models, 0.0)
            for batch in range(len(sample.batches)):
                for name, (model, _) in models.items():
                    round_times[name] += _timed_forward(model, inputs[name].batches[batch], device)
            for name, seconds in round_times.items():
                sample_times[name].append(seconds)
            if time.perf_counter() > deadline:
                break
    directories = directories or {}
    return {
        name: Efficiency(
            parameters=count_parameters(model),
            bytes_on_disk=directory_bytes(directories[name]) if name in directories else None,
            latency_ms_batch1=1000 * statistics.median(single_times[name]),
            throughput_batch32=THROUGHPUT_BATCH_SIZE * len(inputs[name].batches) / statistics.median(sample_times[name]),
        )
        for name, (model, _) in models.items()
    }
