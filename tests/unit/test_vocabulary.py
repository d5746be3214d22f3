
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertModel,
    BertTokenizerFast,
    PreTrainedTokenizerFast,
    XLMRobertaTokenizerFast,
)

from bistil_ray.data.word_frequencies import word_frequencies
from bistil_ray.errors import UserInputError
from bistil_ray.method.vocabulary import (
    BilingualVocabulary,
    build_bilingual_vocabulary,
    trim_embeddings,
    trim_tokenizer,
    untrimmed_vocabulary,
    word_list_token_frequencies,
)

WORDPIECE_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "the", "cat", "dog", "sat", "on", "mat", "##s", "a", "big", "bird", "fly", "##ing", "猫", "狗", "在",
]  # fmt: skip


# XLM-R layout: <s> <pad> </s> <unk> first, <mask> last; ids = list positions.
UNIGRAM_VOCAB = [
    ("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0),
    ("▁the", -2.0), ("▁cat", -2.5), ("▁c", -4.0), ("at", -4.0), ("▁dog", -3.0), ("s", -3.5),
    ("▁sat", -3.0), ("▁on", -3.0), ("▁mat", -3.5), ("▁", -5.0), ("t", -6.0), ("h", -6.0),
    ("e", -6.0), ("c", -6.0), ("a", -6.0), ("m", -6.0), ("o", -6.0), ("n", -6.0), ("猫", -4.0),
    ("<mask>", 0.0),
]  # fmt: skip


def wordpiece_backend() -> Tokenizer:
    backend = Tokenizer(models.WordPiece({p: i for i, p in enumerate(WORDPIECE_VOCAB)}, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    return backend


@pytest.fixture
def bert_tokenizer() -> BertTokenizerFast:
    return BertTokenizerFast(tokenizer_object=wordpiece_backend())


@pytest.fixture
def unigram_tokenizer() -> XLMRobertaTokenizerFast:
    backend = Tokenizer(models.Unigram(UNIGRAM_VOCAB, unk_id=3, byte_fallback=False))
    # The pre-tokenizer XLMRobertaTokenizer rebuilds on load, so a round trip is exact.
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer = XLMRobertaTokenizerFast(tokenizer_object=backend)
    tokenizer.add_special_tokens({"mask_token": "<mask>"})
    return tokenizer


def ids_without_specials(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_wordpiece_keeps_frequent_tokens_and_specials(bert_tokenizer):
    source = ["the cat sat on the mat", "the cats sat"]
    target = ["猫 在"]
    vocabulary = build_bilingual_vocabulary(bert_tokenizer, source, target, threshold=0.05)
    kept = [WORDPIECE_VOCAB[i] for i in vocabulary.kept_ids]
    assert kept == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "##s", "猫", "在"]
    assert vocabulary.size == len(vocabulary.tokenizer) == 13
    assert (vocabulary.source_tokens, vocabulary.target_tokens) == (10, 2)
    assert type(vocabulary.tokenizer) is type(bert_tokenizer)


def test_threshold_counts_relative_frequency_per_corpus(bert_tokenizer):
    # "dog" is 1 of 10 source tokens (0.1) and "狗" is 1 of 2 target tokens (0.5): at 0.2 only 狗 survives.
    source = ["the the the the the the the the the dog"]
    target = ["狗 在"]
    vocabulary = build_bilingual_vocabulary(bert_tokenizer, source, target, threshold=0.2)
    kept = {WORDPIECE_VOCAB[i] for i in vocabulary.kept_ids}
    assert {"the", "狗", "在"} <= kept and "dog" not in kept


def test_trimmed_wordpiece_gives_same_pieces_with_positional_ids(bert_tokenizer):
    kept_ids = [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 17]
    trimmed = trim_tokenizer(bert_tokenizer, kept_ids)
    text = "The cats sat on the mat 猫"
    original_ids = ids_without_specials(bert_tokenizer, text)
    trimmed_ids = ids_without_specials(trimmed, text)
    assert trimmed.convert_ids_to_tokens(trimmed_ids) == bert_tokenizer.convert_ids_to_tokens(original_ids)
    assert trimmed_ids == [kept_ids.index(i) for i in original_ids]
    # Specials around a sequence are renumbered: [CLS] = 2 and [SEP] = 3 keep their positions here.
    assert trimmed(text)["input_ids"] == [2, *trimmed_ids, 3]


def test_dropped_wordpiece_becomes_unknown(bert_tokenizer):
    trimmed = trim_tokenizer(bert_tokenizer, [0, 1, 2, 3, 4, 5, 6])
    assert trimmed.convert_ids_to_tokens(ids_without_specials(trimmed, "the dog cat")) == ["the", "[UNK]", "cat"]


def test_trimmed_tokenizer_keeps_special_tokens(bert_tokenizer):
    trimmed = trim_tokenizer(bert_tokenizer, [0, 1, 2, 3, 4, 7])
    assert trimmed.all_special_tokens == bert_tokenizer.all_special_tokens
    assert (trimmed.pad_token_id, trimmed.unk_token_id, trimmed.mask_token_id) == (0, 1, 4)
    with pytest.raises(UserInputError, match="kept_ids"):
        trim_tokenizer(bert_tokenizer, [0, 1, 2, 3, 7])


def test_bert_processing_post_processor_ids_are_remapped():
    backend = wordpiece_backend()
    backend.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, cls_token="[CLS]", sep_token="[SEP]", unk_token="[UNK]"
    )
    trimmed = trim_tokenizer(tokenizer, [1, 2, 3, 5, 6])
    assert trimmed("the cat")["input_ids"] == [1, 3, 4, 2]


def test_unigram_keeps_pieces_and_falls_back_to_smaller_pieces(unigram_tokenizer):
    text = "the cat sat on the mat"
    pieces = unigram_tokenizer.convert_ids_to_tokens(ids_without_specials(unigram_tokenizer, text))
    assert pieces == ["▁the", "▁cat", "▁sat", "▁on", "▁the", "▁mat"]

    without_cat = [i for i, (piece, _) in enumerate(UNIGRAM_VOCAB) if piece not in ("▁cat", "猫")]
    trimmed = trim_tokenizer(unigram_tokenizer, without_cat)
    assert trimmed.convert_ids_to_tokens(ids_without_specials(trimmed, "the mat")) == ["▁the", "▁mat"]
    # A dropped piece is rebuilt from kept smaller pieces; a character no kept piece covers is unknown.
    cat_ids = ids_without_specials(trimmed, "cat 猫")
    assert trimmed.convert_ids_to_tokens(cat_ids) == ["▁c", "at", "▁", "<unk>"]
    assert cat_ids[-1] == trimmed.unk_token_id == 3
    assert trimmed.mask_token_id == len(without_cat) - 1
    assert trimmed("the mat")["input_ids"] == [0, 4, without_cat.index(12), 2]


def test_unigram_trim_matches_original_on_kept_text(unigram_tokenizer):
    vocabulary = build_bilingual_vocabulary(unigram_tokenizer, ["the cat sat"], ["猫 on the mat"], threshold=0.01)
    for text in ["the cat sat", "猫 on the mat", "the mat sat on the cat"]:
        original = ids_without_specials(unigram_tokenizer, text)
        trimmed = ids_without_specials(vocabulary.tokenizer, text)
        assert trimmed == [vocabulary.kept_ids.index(i) for i in original]


@pytest.mark.parametrize("fixture", ["bert_tokenizer", "unigram_tokenizer"])
def test_save_load_round_trip_through_auto_tokenizer(fixture, request, tmp_path):
    tokenizer = request.getfixturevalue(fixture)
    vocabulary = build_bilingual_vocabulary(tokenizer, ["the cat sat on the mat"], ["猫"], threshold=0.01)
    vocabulary.save(tmp_path)
    loaded = BilingualVocabulary.load(tmp_path)
    assert loaded.kept_ids == vocabulary.kept_ids
    assert (loaded.source_tokens, loaded.target_tokens) == (vocabulary.source_tokens, vocabulary.target_tokens)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(reloaded) is type(tokenizer)
    for text in ["the cat sat on the mat 猫", "the dog"]:
        assert reloaded(text)["input_ids"] == vocabulary.tokenizer(text)["input_ids"]
    assert reloaded.all_special_ids == vocabulary.tokenizer.all_special_ids


def test_trimming_a_loaded_tokenizer_renumbers_its_added_tokens(unigram_tokenizer, tmp_path):
    unigram_tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.init_kwargs["added_tokens_decoder"]  # id-keyed, describes the untrimmed vocabulary
    trimmed = trim_tokenizer(loaded, [0, 1, 2, 3, 4, 5, 23])
    assert trimmed.mask_token_id == 6 and len(trimmed) == 7
    assert trimmed("the cat <mask>")["input_ids"] == [0, 4, 5, 6, 2]


def test_untrimmed_vocabulary_keeps_every_token_and_leaves_the_model_unchanged(bert_tokenizer, tmp_path):
    vocabulary = untrimmed_vocabulary(bert_tokenizer)
    assert vocabulary.kept_ids == list(range(len(WORDPIECE_VOCAB)))
    vocabulary.save(tmp_path)
    loaded = BilingualVocabulary.load(tmp_path)
    assert loaded.kept_ids == vocabulary.kept_ids
    text = ["the big birds flying on the mat 猫"]
    assert loaded.tokenizer(text)["input_ids"] == bert_tokenizer(text)["input_ids"]
    torch.manual_seed(0)
    model = BertModel(tiny_bert_config()).eval()
    inputs = bert_tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        expected = model(**inputs).last_hidden_state
    trim_embeddings(model, loaded.kept_ids)
    with torch.no_grad():
        assert torch.equal(model(**inputs).last_hidden_state, expected)


def test_load_without_record_names_the_file(tmp_path):
    with pytest.raises(UserInputError, match="kept_ids.json"):
        BilingualVocabulary.load(tmp_path)


def test_empty_corpus_is_a_user_error(bert_tokenizer):
    with pytest.raises(UserInputError, match="target corpus"):
        build_bilingual_vocabulary(bert_tokenizer, ["the cat"], ["  "], threshold=0.01)


def tiny_bert_config(**overrides) -> BertConfig:
    settings = dict(
        vocab_size=len(WORDPIECE_VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, pad_token_id=0,
    )  # fmt: skip
    return BertConfig(**(settings | overrides))


def test_trimmed_embeddings_give_identical_hidden_states(bert_tokenizer):
    torch.manual_seed(0)
    model = BertModel(tiny_bert_config()).eval()
    text = ["the cats sat on the mat", "猫 在"]
    vocabulary = build_bilingual_vocabulary(bert_tokenizer, text[:1], text[1:], threshold=0.01)
    full_inputs = bert_tokenizer(text, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**full_inputs).last_hidden_state
    trim_embeddings(model, vocabulary.kept_ids)
    trimmed_inputs = vocabulary.tokenizer(text, padding=True, return_tensors="pt")
    with torch.no_grad():
        actual = model(**trimmed_inputs).last_hidden_state
    assert model.get_input_embeddings().weight.shape == (vocabulary.size, 32)
    assert model.config.vocab_size == vocabulary.size
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("tied", [True, False])
def test_trimmed_mlm_head_keeps_the_kept_logits(tied):
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_bert_config(tie_word_embeddings=tied)).eval()
    with torch.no_grad():
        for parameter in (model.cls.predictions.bias, model.cls.predictions.decoder.bias):
            parameter.normal_()
    kept_ids = [0, 1, 2, 3, 4, 5, 6, 9, 17]
    full_ids = torch.tensor([[2, 5, 6, 9, 17, 3]])
    with torch.no_grad():
        expected = model(input_ids=full_ids).logits[..., kept_ids]
    trim_embeddings(model, kept_ids)
    with torch.no_grad():
        actual = model(input_ids=torch.tensor([[kept_ids.index(i) for i in full_ids[0].tolist()]])).logits
    assert actual.shape[-1] == len(kept_ids) == model.get_output_embeddings().out_features
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)
    assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) == tied


def test_trim_embeddings_remaps_config_ids():
    model = BertModel(tiny_bert_config(pad_token_id=4, bos_token_id=2, eos_token_id=3))
    trim_embeddings(model, [0, 2, 3, 4, 7])
    assert (model.config.pad_token_id, model.config.bos_token_id, model.config.eos_token_id) == (3, 1, 2)
    assert model.get_input_embeddings().padding_idx == 3
    untouched = BertModel(tiny_bert_config(pad_token_id=4))
    with pytest.raises(UserInputError, match="pad_token_id"):
        trim_embeddings(untouched, [0, 1, 2])
    assert untouched.get_input_embeddings().weight.shape[0] == untouched.config.vocab_size == len(WORDPIECE_VOCAB)


def test_word_lists_keep_tokens_the_corpora_lack(bert_tokenizer):
    without = build_bilingual_vocabulary(bert_tokenizer, ["the cat"], ["the"], threshold=0.1)
    word_list = {"mat": 0.7, "sat": 0.29, "on": 0.01}
    with_list = build_bilingual_vocabulary(bert_tokenizer, ["the cat"], ["the"], threshold=0.1, word_lists=[word_list])
    added = {WORDPIECE_VOCAB[i] for i in set(with_list.kept_ids) - set(without.kept_ids)}
    assert added == {"mat", "sat"}  # "on" is below the threshold in the list


def test_word_list_frequencies_weight_pieces_by_word_frequency(bert_tokenizer):
    frequencies = word_list_token_frequencies(bert_tokenizer, {"cat": 0.75, "mat": 0.25})
    assert frequencies.sum() == pytest.approx(1.0)
    assert frequencies[WORDPIECE_VOCAB.index("cat")] == pytest.approx(0.75)
    assert frequencies[WORDPIECE_VOCAB.index("mat")] == pytest.approx(0.25)


def test_wordfreq_lists_match_exact_language_codes():
    assert word_frequencies("zh")["的"] > 1e-3
    assert word_frequencies("yo") is None  # wordfreq would fall back to English
    assert word_frequencies("zh-hant") is None  # a script-qualified tag would get another script
