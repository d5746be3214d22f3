"""A pipeline step is a function of its inputs and settings: the global random state before it
does not change what it builds (the task head a step creates is seeded by the step's own seed)."""

from pathlib import Path

import datasets
import torch
from fixtures_teacher import tiny_bert_config
from safetensors.torch import load_file
from transformers import BertTokenizerFast

from bistil_ray.config import RunConfig, TaskTeacherConfig
from bistil_ray.data.tasks import TaskData
from bistil_ray.method.hooks import LocalHooks
from bistil_ray.pipeline import Inputs, build_task_teacher

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(tiny_bert_config().vocab_size - len(SPECIAL))]


def task() -> TaskData:
    texts = [" ".join(WORDS[i : i + 4]) for i in range(16)]
    split = datasets.Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(16)]})
    return TaskData("toy", ["even", "odd"], ("text",), split, split, {"zh": split})


def test_the_task_teacher_does_not_depend_on_the_global_random_state(tmp_path: Path, tiny_bert_dir: Path):
    teacher_dir = tiny_bert_dir  # the tiny BERT, with a tokenizer whose ids match its vocabulary
    BertTokenizerFast(vocab={piece: index for index, piece in enumerate(SPECIAL + WORDS)}).save_pretrained(teacher_dir)
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
