"""Teacher fixtures for any test module: a tiny random BERT directory and the real converted e5.

Import the fixtures into a test module (or a conftest) by name:
`from fixtures_teacher import e5_teacher_dir, tiny_bert_dir`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

from bistil_ray.assets.teachers import resolve_teacher

E5_TEACHER = "builtin:multilingual-e5-small"


def tiny_bert_config() -> BertConfig:
    return BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64
    )


@pytest.fixture
def tiny_bert_dir(tmp_path: Path) -> Path:
    """A saved random 4-layer BERT (config.json + model.safetensors)."""
    torch.manual_seed(0)
    directory = tmp_path / "tiny-bert"
    BertModel(tiny_bert_config()).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def e5_teacher_dir() -> Path:
    """The built-in teacher, converted into the real cache on first use and reused between runs."""
    return Path(resolve_teacher(E5_TEACHER))
