from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from bistil_ray.errors import UserInputError
from bistil_ray.method.evaluation import (
    classification_scores,
    count_parameters,
    directory_bytes,
    evaluate_task,
    measure_efficiency,
    predict,
    throughput_batches,
)

WORDS = "the cat dog sat on a mat ran fast slow red blue big small house tree".split()


def make_tokenizer() -> BertTokenizerFast:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    return BertTokenizerFast(vocab={piece: index for index, piece in enumerate(vocab)})


def make_model(layers: int = 2, hidden: int = 32, num_labels: int = 3) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        num_labels=num_labels,
        initializer_range=0.5,  # large random weights, so predictions differ between texts
    )
    return BertForSequenceClassification(config).eval()


def sentence(rng: np.random.Generator, length: int) -> str:
    return " ".join(rng.choice(WORDS, size=length))


# --- scores ------------------------------------------------------------------------------------------


def test_scores_match_hand_computed_values_with_a_label_never_predicted():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predictions = np.array([0, 0, 1, 1, 1, 1])  # label 2 is never predicted
    scores = classification_scores(predictions, labels, num_labels=3)
    # F1(0) = 2*2/(2*2+0+1) = 0.8; F1(1) = 2*2/(2*2+2+0) = 2/3; F1(2) = 0 (TP 0, FN 1).
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0.0) / 3)


def test_macro_f1_averages_over_the_union_of_gold_and_predicted_labels_only():
    labels = np.array([0, 0, 1, 1])
    predictions = np.array([0, 3, 1, 1])  # label 3 predicted but never gold, label 2 in neither
    scores = classification_scores(predictions, labels, num_labels=4)
    # F1(0) = 2/(2+0+1) = 2/3; F1(1) = 1; F1(3) = 0 (FP 1). Label 2 is left out.
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert classification_scores(labels, labels, num_labels=4) == {"accuracy": 1.0, "macro_f1": 1.0}


def test_scores_reject_out_of_range_labels_and_empty_input():
    with pytest.raises(UserInputError, match="label"):
        classification_scores(np.array([0, 1]), np.array([0, 5]), num_labels=3)
    with pytest.raises(UserInputError, match="no examples"):
        classification_scores(np.array([], dtype=int), np.array([], dtype=int), num_labels=3)


# --- prediction ------------------------------------------------------------------------------------


def test_predict_restores_dataset_order_despite_length_sorting():
    rng = np.random.default_rng(0)
    model, tokenizer = make_model(), make_tokenizer()
    texts = [sentence(rng, length) for length in rng.integers(1, 30, size=23)]
    one_by_one = np.array(
        [model(**tokenizer(text, return_tensors="pt")).logits.argmax(-1).item() for text in texts]
    )
    assert len(set(one_by_one)) > 1, "a constant predictor would not test ordering"
    batched = predict(model, tokenizer, Dataset.from_dict({"text": texts}), ["text"], batch_size=4)
    np.testing.assert_array_equal(batched, one_by_one)


def test_predict_encodes_text_pairs_and_keeps_the_training_mode():
    rng = np.random.default_rng(1)
    model, tokenizer = make_model(), make_tokenizer()
    premises = [sentence(rng, 6) for _ in range(5)]
    hypotheses = [sentence(rng, 3) for _ in range(5)]
    expected = model(**tokenizer(premises, hypotheses, padding=True, return_tensors="pt")).logits.argmax(-1)
    model.train()
    dataset = Dataset.from_dict({"premise": premises, "hypothesis": hypotheses})
    assert predict(model, tokenizer, dataset, ["premise", "hypothesis"]).tolist() == expected.tolist()
    assert model.training


def test_evaluate_task_scores_against_the_label_column():
    rng = np.random.default_rng(2)
    model, tokenizer = make_model(), make_tokenizer()
    texts = [sentence(rng, 5) for _ in range(12)]
    predicted = predict(model, tokenizer, Dataset.from_dict({"text": texts}), ["text"])
    labels = predicted.copy()
    labels[:3] = (labels[:3] + 1) % 3
    scores = evaluate_task(model, tokenizer, Dataset.from_dict({"text": texts, "label": labels}), ["text"], ["a", "b", "c"])
    assert scores["accuracy"] == scores["score"] == pytest.approx(9 / 12) and scores["metric"] == "accuracy"
    with pytest.raises(UserInputError, match="'sentence'"):
        evaluate_task(model, tokenizer, Dataset.from_dict({"text": texts, "label": labels}), ["sentence"], ["a", "b", "c"])


# --- efficiency ------------------------------------------------------------------------------------


def test_count_parameters_and_directory_bytes(tmp_path: Path):
    model, tokenizer = make_model(), make_tokenizer()
    expected = sum(p.numel() for p in model.parameters())
    assert count_parameters(model) == expected
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "README.md").write_text("x" * 10_000)
    size = directory_bytes(tmp_path)
    weights = (tmp_path / "model.safetensors").stat().st_size
    assert weights >= 4 * expected  # float32
    assert weights < size < weights + 10_000  # tokenizer files count, the model card does not
    with pytest.raises(UserInputError):
        directory_bytes(tmp_path / "missing")


def test_measure_efficiency_fewer_layers_give_higher_throughput(tmp_path: Path):
    rng = np.random.default_rng(3)
    tokenizer = make_tokenizer()
    deep, shallow = make_model(layers=8, hidden=64), make_model(layers=1, hidden=64)
    shallow.save_pretrained(tmp_path)
    texts = [sentence(rng, 12) for _ in range(40)]
    results = measure_efficiency(
        {"teacher": (deep, tokenizer), "student": (shallow, tokenizer)},
        texts,
        max_length=32,
        warmup=1,
        repeats=3,
        seconds_budget=0.5,
        directories={"student": tmp_path},
    )
    teacher, student = results["teacher"], results["student"]
    for efficiency in (teacher, student):
        assert efficiency.latency_ms_batch1 > 0 and efficiency.throughput_batch32 > 0
    assert teacher.parameters == count_parameters(deep) > student.parameters == count_parameters(shallow)
    assert teacher.bytes_on_disk is None and student.bytes_on_disk == directory_bytes(tmp_path)
    assert student.throughput_batch32 > 1.5 * teacher.throughput_batch32
    assert student.latency_ms_batch1 < teacher.latency_ms_batch1


def test_throughput_sample_is_the_first_256_texts_in_full_batches_of_32():
    texts = [f"text {i}" for i in range(300)]
    batches = throughput_batches(texts)
    assert [len(batch) for batch in batches] == [32] * 8
    assert [text for batch in batches for text in batch] == texts[:256]
    assert throughput_batches(texts[:40]) == [texts[:32]]  # a partial batch would time fewer texts
    assert throughput_batches(texts[:5]) == [texts[:5] * 6 + texts[:2]]  # too few: cycled into one batch


def test_measure_efficiency_needs_texts():
    with pytest.raises(UserInputError, match="texts"):
        measure_efficiency({"m": (make_model(), make_tokenizer())}, [])
