"""Tiny random students with real tokenizers, for the tests of export and deployment: a 2-layer BERT
with a WordPiece tokenizer and a 2-layer XLM-R with a generic fast tokenizer (the kind vocabulary
trimming builds), both with the task head of `LABELS`; and the BERT with a token-classification head.

Import them by name: `from tiny_students import LABELS, bert_student`.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertTokenizerFast,
    PreTrainedTokenizerFast,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

WORDS = "the cat dog sat on a mat ran fast house tree o gato correu casa árvore".split()
SENTENCES = ["the cat sat on a mat", "o gato correu", "a dog ran fast to the house", "árvore casa tree"]
LABELS = ["greetings", "food", "sports"]


def _bert_parts() -> tuple[BertConfig, BertTokenizerFast]:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizerFast(vocab={piece: index for index, piece in enumerate(vocab)})
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, num_labels=len(LABELS), initializer_range=0.5,
    )
    return config, tokenizer


def bert_student() -> tuple[BertForSequenceClassification, BertTokenizerFast]:
    config, tokenizer = _bert_parts()
    return BertForSequenceClassification(config).eval(), tokenizer


def bert_token_student() -> tuple[BertForTokenClassification, BertTokenizerFast]:
    """The BERT student with one tag of `LABELS` per token (NER, POS)."""
    config, tokenizer = _bert_parts()
    return BertForTokenClassification(config).eval(), tokenizer


def xlmr_student() -> tuple[XLMRobertaForSequenceClassification, PreTrainedTokenizerFast]:
    """An XLM-R-family student with a generic fast tokenizer, the kind vocabulary trimming builds."""
    pieces = ["<s>", "<pad>", "</s>", "<unk>", *WORDS, "<mask>"]
    backend = Tokenizer(models.WordLevel({piece: index for index, piece in enumerate(pieces)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", model_input_names=["input_ids", "attention_mask"],
    )
    torch.manual_seed(1)
    config = XLMRobertaConfig(
        vocab_size=len(pieces), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, num_labels=len(LABELS), initializer_range=0.5, pad_token_id=1,
    )
    return XLMRobertaForSequenceClassification(config).eval(), tokenizer
