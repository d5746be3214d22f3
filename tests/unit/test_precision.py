"""The `precision` setting: which dtype each setting resolves to, and that a loop computes in it."""

import pytest
import torch
from fixtures_teacher import tiny_bert_config
from transformers import BertForSequenceClassification

from bistil_ray.config import TaskTeacherConfig
from bistil_ray.method import training
from bistil_ray.method.hooks import LocalHooks
from bistil_ray.method.task_teacher import train_task_teacher

CPU = torch.device("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_auto_follows_the_hardware_and_explicit_settings_win(monkeypatch, native: bool):
    monkeypatch.setattr(training, "has_native_bf16", lambda device: native)
    assert training.compute_dtype(CPU, "auto") == (torch.bfloat16 if native else torch.float32)
    assert training.compute_dtype(CPU, "bf16") == torch.bfloat16
    assert training.compute_dtype(CPU, "fp32") == torch.float32


@pytest.mark.parametrize(("precision", "expected"), [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_the_training_loop_multiplies_in_the_chosen_precision_and_keeps_float32_weights(precision, expected):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config())  # two labels
    seen: set[torch.dtype] = set()
    model.bert.encoder.layer[0].intermediate.dense.register_forward_hook(lambda module, args, out: seen.add(out.dtype))
    examples = [{"input_ids": [2, 5 + i % 30, 6, 3], "labels": i % 2} for i in range(32)]
    config = TaskTeacherConfig(steps=2, eval_every=2, batch_size=8, precision=precision)
    train_task_teacher(model, examples, examples[:8], config, LocalHooks(), 0, log=lambda message: None)
    assert seen == {expected}  # training steps and the validation pass alike
    assert {parameter.dtype for parameter in model.parameters()} == {torch.float32}
