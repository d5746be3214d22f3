"""A pipeline step is a function of its inputs and settings: neither the global random state before it
nor what its process ran earlier changes what it builds (the task head a step creates is seeded by
the step's own seed, and nothing a loop measures on the side draws from that seed's stream)."""

from pathlib import Path

import datasets
import torch
from fixtures_teacher import tiny_bert_config
from safetensors.torch import load_file
from transformers import BertTokenizerFast

from bistil_ray.config import RunConfig, TaskTeacherConfig
from bistil_ray.data.tasks import TaskData
from bistil_ray.method.hooks import LocalHooks
from bistil_ray.method.training import peak_matmul_flops
from bistil_ray.inputs import Inputs
from bistil_ray.pipeline import build_task_teacher

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(tiny_bert_config().vocab_size - len(SPECIAL))]


def task() -> TaskData:
    texts = [" ".join(WORDS[i : i + 4]) for i in range(16)]
    split = datasets.Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(16)]})
    return TaskData("toy", ["even", "odd"], ("text",), split, split, {"zh": split})


def teacher_inputs(teacher_dir: Path) -> Inputs:
    """The tiny BERT with a tokenizer whose ids match its vocabulary, on the toy task."""
    BertTokenizerFast(vocab={piece: index for index, piece in enumerate(SPECIAL + WORDS)}).save_pretrained(teacher_dir)
    return Inputs(RunConfig(teacher=str(teacher_dir), target_lang="zh"), str(teacher_dir), task(), [], [])


def assert_same_weights(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys() and any(key.startswith("classifier") for key in first)
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_the_task_teacher_does_not_depend_on_the_global_random_state(tmp_path: Path, tiny_bert_dir: Path):
    inputs = teacher_inputs(tiny_bert_dir)
    config = TaskTeacherConfig(steps=2, eval_every=2, batch_size=4)
    built = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        out_dir = tmp_path / f"task-teacher-{global_seed}"
        out_dir.mkdir()
        build_task_teacher(inputs, config, out_dir, LocalHooks(), log=lambda message: None)
        built.append(load_file(out_dir / "model.safetensors"))
    assert_same_weights(*built)


def test_the_first_task_teacher_of_a_process_equals_a_later_one(tmp_path: Path, tiny_bert_dir: Path):
    inputs = teacher_inputs(tiny_bert_dir)
    config = TaskTeacherConfig(steps=4, eval_every=2, batch_size=4)  # steps after an evaluation, dropout on
    peak_matmul_flops.cache_clear()  # the first evaluation of a process measures the machine's peak
    runs = []
    for name in ("first", "later"):
        out_dir = tmp_path / name
        out_dir.mkdir()
        metrics = build_task_teacher(inputs, config, out_dir, LocalHooks(), log=lambda message: None)
        runs.append((metrics["loss"], load_file(out_dir / "model.safetensors")))
    (first_loss, first), (later_loss, later) = runs
    assert first_loss == later_loss  # the last step's loss: dropout masks drawn after the first evaluation
    assert_same_weights(first, later)
