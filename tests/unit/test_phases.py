"""The three training loops on tiny random BERTs: they learn, they resume bit-exactly, and
phase 2 leaves exactly a lottery ticket's worth of changed entries."""

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel, BertTokenizerFast

from bistil_ray.config import Phase1Config, Phase2Config, StudentConfig, TaskTeacherConfig
from bistil_ray.method.hooks import LocalHooks
from bistil_ray.method.phase1 import BilingualText, train_phase1
from bistil_ray.method.phase2 import train_phase2
from bistil_ray.method.sparse_finetuning import sparsifiable_parameters
from bistil_ray.method.student import build_student
from bistil_ray.method.task_teacher import train_task_teacher

PAD = 0


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> BertTokenizerFast:
    """A 40-piece tokenizer matching the tiny models' ids: 0-4 special, 5-39 words."""
    vocab = tmp_path_factory.mktemp("tokenizer") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(5, 40)]))
    return BertTokenizerFast(vocab_file=str(vocab))


def tiny_config(**overrides) -> BertConfig:
    settings = dict(
        vocab_size=40, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64, attn_implementation="eager", num_labels=2,
    )
    settings.update(overrides)
    return BertConfig(**settings)


def sentences(count: int, seed: int) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    result = []
    for _ in range(count):
        length = int(torch.randint(4, 12, (1,), generator=generator))
        ids = torch.randint(2, 40, (length,), generator=generator).tolist()
        result.append({"input_ids": ids, "labels": int(5 in ids)})
    return result


class Crash(Exception):
    pass


@dataclass
class CrashAfterFirstCheckpoint(LocalHooks):
    """Keeps the first checkpoint, then dies: a worker killed mid-phase."""

    def on_evaluation(self, metrics, checkpoint):
        super().on_evaluation(metrics, checkpoint)
        raise Crash


def state(model) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def assert_same_state(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def phase1_setup():
    torch.manual_seed(0)
    teacher = BertModel(tiny_config(), add_pooling_layer=False).eval()
    student, layer_map, projection = build_student(teacher, StudentConfig(layers=2))
    text = BilingualText(source=sentences(64, 1), target=sentences(64, 2), validation=sentences(16, 3))
    return teacher, student, layer_map, projection, text


def test_phase1_learns_and_resumes_exactly(tmp_path: Path, tokenizer):
    config = Phase1Config(steps=12, eval_every=4, batch_size=8, lr=1e-3, warmup_ratio=0.0)
    teacher, student, layer_map, projection, text = phase1_setup()
    first_loss = None

    def record(metrics):
        nonlocal first_loss
        first_loss = first_loss or metrics["val_loss"]

    metrics = train_phase1(teacher, student, layer_map, projection, text, config, LocalHooks(log=record), tokenizer, log=lambda m: None)
    assert metrics["step"] == 12 and metrics["best_val_loss"] < first_loss
    assert metrics["tokens_per_s"] > 0 and 0 < metrics["mfu"] < 1
    uninterrupted = state(student)

    teacher, student, layer_map, projection, text = phase1_setup()
    crashing = CrashAfterFirstCheckpoint(checkpoint_dir=tmp_path / "ckpt")
    with pytest.raises(Crash):
        train_phase1(teacher, student, layer_map, projection, text, config, crashing, tokenizer, log=lambda m: None)
    teacher, student, layer_map, projection, text = phase1_setup()
    resumed = LocalHooks(checkpoint_dir=tmp_path / "ckpt")
    assert resumed.resume_from is not None
    metrics = train_phase1(teacher, student, layer_map, projection, text, config, resumed, tokenizer, log=lambda m: None)
    assert metrics["step"] == 12
    assert_same_state(uninterrupted, state(student))


def test_phase1_with_masked_lm_term_trains_the_mlm_head(tokenizer):
    torch.manual_seed(0)
    teacher = BertForMaskedLM(tiny_config()).eval()
    student, layer_map, projection = build_student(teacher, StudentConfig(layers=2))
    text = BilingualText(source=sentences(64, 1), target=sentences(64, 2), validation=sentences(16, 3))
    head_before = student.cls.predictions.transform.dense.weight.detach().clone()
    config = Phase1Config(steps=8, eval_every=4, batch_size=8, lr=1e-3, warmup_ratio=0.0, alpha_attn=0.0, alpha_mlm=1.0)
    metrics = train_phase1(teacher, student, layer_map, projection, text, config, LocalHooks(), tokenizer, log=lambda m: None)
    assert metrics["loss_mlm"] > 0 and "loss_attn" not in metrics
    assert not torch.equal(student.cls.predictions.transform.dense.weight, head_before)


def test_phase1_with_masked_lm_only_trains_a_random_student_without_running_the_teacher(tokenizer):
    torch.manual_seed(0)
    teacher = BertForMaskedLM(tiny_config()).eval()

    def refuse(module, args, kwargs):
        raise AssertionError("the teacher ran, but no loss term needs it")

    teacher.register_forward_pre_hook(refuse, with_kwargs=True)
    student, layer_map, projection = build_student(teacher, StudentConfig(layers=2, initialisation="random"))
    text = BilingualText(source=sentences(64, 1), target=sentences(64, 2), validation=sentences(16, 3))
    config = Phase1Config(
        steps=8, eval_every=4, batch_size=8, lr=1e-3, warmup_ratio=0.0, alpha_hidden=0.0, alpha_attn=0.0, alpha_mlm=1.0
    )
    metrics = train_phase1(teacher, student, layer_map, projection, text, config, LocalHooks(), tokenizer, log=lambda m: None)
    assert metrics["step"] == 8 and {key for key in metrics if key.startswith("loss_")} == {"loss_mlm"}


def test_task_teacher_learns_a_learnable_task():
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config())
    config = TaskTeacherConfig(steps=60, eval_every=30, batch_size=16, lr=2e-3, warmup_ratio=0.0)
    metrics = train_task_teacher(model, sentences(320, 4), sentences(64, 5), config, LocalHooks(), PAD, log=lambda m: None)
    assert metrics["best_source_score"] >= 0.8


def task_teacher_setup():
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config())
    return model, {name: p.detach().clone() for name, p in sparsifiable_parameters(model).items()}


def moved_entries(model, theta_0: dict) -> tuple[int, int]:
    body = sparsifiable_parameters(model)
    return sum(int((body[name] != theta_0[name]).sum()) for name in body), sum(p.numel() for p in body.values())


def test_frozen_body_task_teacher_trains_only_pooler_and_classifier():
    model, theta_0 = task_teacher_setup()
    head_0 = model.classifier.weight.detach().clone()
    config = TaskTeacherConfig(method="frozen_body", steps=20, eval_every=10, batch_size=16, lr=2e-3, warmup_ratio=0.0)
    metrics = train_task_teacher(model, sentences(160, 4), sentences(32, 5), config, LocalHooks(), PAD, log=lambda m: None)
    assert metrics["method"] == "frozen_body"
    for name, parameter in model.named_parameters():
        if name in theta_0:
            assert torch.equal(parameter, theta_0[name]), name
    assert not torch.equal(model.classifier.weight, head_0)


@pytest.mark.parametrize("crash", [False, True])
def test_lt_sft_task_teacher_moves_only_its_ticket_from_the_pretrained_weights_and_resumes_exactly(tmp_path: Path, crash: bool):
    config = TaskTeacherConfig(method="lt_sft", density=0.1, steps=12, eval_every=3, batch_size=8, lr=2e-3, freeze_embeddings=False)
    train, validation = sentences(64, 4), sentences(16, 5)
    model, theta_0 = task_teacher_setup()
    if crash:  # die at the first evaluation of the sparse half (evaluations at 3, 6 = half end, 9)
        for _ in range(3):
            with pytest.raises(Crash):
                train_task_teacher(model, train, validation, config, CrashAfterFirstCheckpoint(checkpoint_dir=tmp_path / "c"), PAD, log=lambda m: None)
            model, _ = task_teacher_setup()
    train_task_teacher(model, train, validation, config, LocalHooks(checkpoint_dir=tmp_path / "c"), PAD, log=lambda m: None)
    changed, total = moved_entries(model, theta_0)
    assert 0 < changed <= int(0.1 * total)
    if crash:
        reference, _ = task_teacher_setup()
        train_task_teacher(reference, train, validation, config, LocalHooks(), PAD, log=lambda m: None)
        assert_same_state(state(reference), state(model))


def test_lt_sft_needs_a_dense_and_a_sparse_half():
    with pytest.raises(ValueError, match="lt_sft needs steps >= 2"):
        TaskTeacherConfig(method="lt_sft", steps=1)
    assert TaskTeacherConfig(method="lt_sft", steps=9).dense_steps == 4
    assert TaskTeacherConfig(steps=9).dense_steps == 9


def phase2_setup():
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(tiny_config()).eval()
    student, layer_map, projection = build_student(teacher, StudentConfig(layers=2))
    return teacher, student, layer_map, projection


@pytest.mark.parametrize("crash", [False, True])
def test_phase2_changes_only_the_lottery_ticket_and_resumes_exactly(tmp_path: Path, crash: bool):
    config = Phase2Config(full_steps=6, sparse_steps=6, eval_every=3, batch_size=8, lr=1e-3, density=0.1, weight_decay=0.1)
    train, validation = sentences(64, 6), sentences(16, 7)
    teacher, student, layer_map, projection = phase2_setup()
    theta_0 = {name: p.detach().clone() for name, p in sparsifiable_parameters(student).items()}
    head_0 = student.classifier.weight.detach().clone()
    hooks = LocalHooks(checkpoint_dir=tmp_path / "ckpt")
    if crash:  # die at the first evaluation of the sparse stage, then resume in a fresh process state
        crashing = CrashAfterFirstCheckpoint(checkpoint_dir=tmp_path / "ckpt")
        for _ in range(3):  # evaluations at steps 3, 6 (stage end), 9
            with pytest.raises(Crash):
                train_phase2(teacher, student, layer_map, projection, train, validation, config, crashing, PAD, log=lambda m: None)
            teacher, student, layer_map, projection = phase2_setup()
    metrics = train_phase2(teacher, student, layer_map, projection, train, validation, config, hooks, PAD, log=lambda m: None)
    assert metrics["stage"] == "sparse" and metrics["step"] == 12

    changed, total = 0, 0
    for name, parameter in sparsifiable_parameters(student).items():
        changed += int((parameter != theta_0[name]).sum())
        total += parameter.numel()
    assert 0 < changed <= int(0.1 * total)
    assert not torch.equal(student.classifier.weight, head_0)
    if crash:
        teacher, reference, layer_map, projection = phase2_setup()
        train_phase2(teacher, reference, layer_map, projection, train, validation, config, LocalHooks(), PAD, log=lambda m: None)
        assert_same_state(state(reference), state(student))


def test_phase2_scores_the_target_validation_set_at_every_evaluation():
    config = Phase2Config(full_steps=3, sparse_steps=3, eval_every=3, batch_size=8, lr=1e-3, target_text_ratio=0.0)
    train, validation, target_validation = sentences(32, 6), sentences(16, 7), sentences(24, 8)
    teacher, student, layer_map, projection = phase2_setup()
    reports = []
    hooks = LocalHooks(log=reports.append)
    train_phase2(
        teacher, student, layer_map, projection, train, validation, config, hooks, PAD,
        target_validation=target_validation, log=lambda m: None,
    )
    assert [report["step"] for report in reports] == [3, 6]
    for report in reports:
        assert 0 <= report["target_validation_score"] <= 1
        # 24 examples: the score is a multiple of 1/24, not the 16-example source score's 1/16.
        assert round(report["target_validation_score"] * 24, 6).is_integer()
    without = []
    hooks = LocalHooks(log=without.append)
    teacher, student, layer_map, projection = phase2_setup()
    train_phase2(teacher, student, layer_map, projection, train, validation, config, hooks, PAD, log=lambda m: None)
    assert all("target_validation_score" not in report for report in without)
