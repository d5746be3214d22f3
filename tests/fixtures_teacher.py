"""Teacher fixtures for any test module: a tiny random BERT directory, the real converted e5, and an
offline Hugging Face hub.

Import the fixtures into a test module (or a conftest) by name:
`from fixtures_teacher import e5_teacher_dir, offline_hub, tiny_bert_dir`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants as hub_constants
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


def use_offline_hub(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make the Hugging Face hub offline, with a cache under `root` holding one tiny model config,
    `org/tiny` at commit aaaa...; any other hub id is unreachable."""
    hub = root / "hub"
    snapshot = hub / "models--org--tiny" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (hub / "models--org--tiny" / "refs").mkdir()
    (hub / "models--org--tiny" / "refs" / "main").write_text("a" * 40)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 32}))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(hub))
    return hub


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return use_offline_hub(tmp_path, monkeypatch)
