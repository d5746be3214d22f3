"""A pipeline step is a function of its inputs and settings: the global random state before it
does not change what it builds (the task head a step creates is seeded by the step's own seed)."""

from pathlib import Path

import datasets
import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertModel, BertTokenizerFast

from bistil_ray.config import RunConfig, TaskTeacherConfig
from bistil_ray.data.tasks import TaskData
from bistil_ray.method.hooks import LocalHooks
from bistil_ray.pipeline import Inputs, build_task_teacher

WORDS = [f"w{i}" for i in range(20)]


def tiny_teacher(directory: Path) -> Path:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    BertTokenizerFast(vocab={piece: index for index, piece in enumerate(vocab)}).save_pretrained(directory)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32
    )
    BertModel(config).save_pretrained(directory)
    return directory


def task() -> TaskData:
    texts = [" ".join(WORDS[i : i + 4]) for i in range(16)]
    split = datasets.Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(16)]})
    return TaskData("toy", ["even", "odd"], ("text",), split, split, {"zh": split})


def test_the_task_teacher_does_not_depend_on_the_global_random_state(tmp_path: Path):
    teacher_dir = tiny_teacher(tmp_path / "teacher")
    inputs = Inputs(RunConfig(teacher=str(teacher_dir), target_lang="zh"), str(teacher_dir), task(), [], [])
    config = TaskTeacherConfig(steps=2, eval_every=2, batch_size=4)
    built = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        out_dir = tmp_path / f"task-teacher-{global_seed}"
        out_dir.mkdir()
        build_task_teacher(inputs, config, out_dir, LocalHooks(), log=lambda message: None)
        built.append(load_file(out_dir / "model.safetensors"))
    first, second = built
    assert first.keys() == second.keys() and any(key.startswith("classifier") for key in first)
    for key in first:
        assert torch.equal(first[key], second[key]), key
