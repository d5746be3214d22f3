"""A biaffine dependency parser over any Hugging Face encoder (Dozat and Manning 2017).

Each word is read at its first sub-word that carries text (`batching.first_subword_positions`), the
root at the encoder's first position (its [CLS] or <s>). Two small MLPs give every word a
representation as a dependent and one as a head; a biaffine product scores every (dependent, head)
pair, and a bilinear classifier scores the relation of a dependent with a given head. A word's head
is the highest-scoring one; `tree_heads` decodes well-formed trees instead (Chu-Liu-Edmonds).

Saved, a parser is a plain Hugging Face encoder directory (`AutoModel` loads it alone) with two files
beside it: `bistil_parser.json` (the relation names and the MLP sizes) and
`bistil_parser.safetensors` (the head's weights). `BiaffineParser.from_pretrained(directory)` loads
both; with no parser files there (a pretrained encoder or a phase-1 student) the head starts new.

    from transformers import AutoTokenizer
    from bistil_ray.method.parser import BiaffineParser

    parser = BiaffineParser.from_pretrained("path/to/student").eval()
    tokenizer = AutoTokenizer.from_pretrained("path/to/student")
    heads, relations = parser.parse(tokenizer, ["The", "cat", "sleeps", "."])
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import networkx as nx
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from bistil_ray.method.losses import IGNORE_INDEX

PARSER_CONFIG_FILE = "bistil_parser.json"
PARSER_WEIGHTS_FILE = "bistil_parser.safetensors"
# Dozat and Manning's sizes: 500 for arcs, 100 for relations, dropout 0.33 on both MLPs.
ARC_SIZE, RELATION_SIZE, MLP_DROPOUT = 500, 100, 0.33


@dataclass
class ParserOutput(ModelOutput):
    """`arc_logits` (batch, words, 1 + words): each word's score for every head candidate, the root
    first, masked to a large negative where there is no word; `logits` (batch, words, relations): the
    relation scores of each word with the head in `label_heads` (gold heads where given, else the
    predicted ones); `word_mask` (batch, words): which words are real."""

    loss: Tensor | None = None
    arc_logits: Tensor | None = None
    logits: Tensor | None = None
    label_heads: Tensor | None = None
    word_mask: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


class BiaffineHead(nn.Module):
    def __init__(self, hidden_size: int, relations: int, arc_size: int = ARC_SIZE, relation_size: int = RELATION_SIZE):
        super().__init__()

        def mlp(size: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(hidden_size, size), nn.LeakyReLU(0.1), nn.Dropout(MLP_DROPOUT))

        self.arc_dependent, self.arc_head = mlp(arc_size), mlp(arc_size)
        self.relation_dependent, self.relation_head = mlp(relation_size), mlp(relation_size)
        # U and u of s_ij = d_i U h_j + h_j u: the second term is how likely j is to head anything.
        self.arc_weight = nn.Parameter(torch.zeros(arc_size, arc_size))
        self.arc_bias = nn.Parameter(torch.zeros(arc_size))
        # W_r of d_i W_r h_j, per relation r (nn.Bilinear has no autocast rule: einsum has).
        self.relation_weight = nn.Parameter(torch.zeros(relations, relation_size, relation_size))
        self.relation_linear = nn.Linear(2 * relation_size, relations)

    def arcs(self, words: Tensor, candidates: Tensor) -> Tensor:
        dependent, head = self.arc_dependent(words), self.arc_head(candidates)
        return dependent @ self.arc_weight @ head.transpose(1, 2) + (head @ self.arc_bias)[:, None, :]

    def relations(self, words: Tensor, heads: Tensor) -> Tensor:
        dependent, head = self.relation_dependent(words), self.relation_head(heads)
        bilinear = torch.einsum("bnd,rde,bne->bnr", dependent, self.relation_weight, head)
        return bilinear + self.relation_linear(torch.cat([dependent, head], dim=-1))


class BiaffineParser(nn.Module):
    """An encoder with a `BiaffineHead` named `classifier`, as a classifier's head is named, so that
    LT-SFT keeps it dense and phase 2 starts it from the task teacher's."""

    def __init__(self, encoder: PreTrainedModel, relations: Sequence[str], arc_size: int = ARC_SIZE, relation_size: int = RELATION_SIZE):
        super().__init__()
        self.encoder = encoder
        self.relation_names = list(relations)
        self.arc_size, self.relation_size = arc_size, relation_size
        self.classifier = BiaffineHead(encoder.config.hidden_size, len(self.relation_names), arc_size, relation_size)
        self.config.num_labels = len(self.relation_names)
        self.config.id2label = dict(enumerate(self.relation_names))
        self.config.label2id = {name: index for index, name in enumerate(self.relation_names)}

    @property
    def config(self) -> PretrainedConfig:
        return self.encoder.config

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def get_output_embeddings(self) -> None:
        return None

    # --- saving and loading --------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, num_labels: int | None = None, id2label: dict | None = None,
                        label2id: dict | None = None, **encoder_options: Any) -> "BiaffineParser":  # fmt: skip
        """The encoder of `directory` and, where it holds one, its parser head; else a new head for the
        relations of `id2label`. `encoder_options` go to `AutoModel.from_pretrained`."""
        directory = Path(directory)
        encoder_options.pop("use_safetensors", None)  # always: no pickled weights
        encoder = AutoModel.from_pretrained(directory, use_safetensors=True, **encoder_options)
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # unused by a parser: it would only idle under LT-SFT and DDP
        saved = directory / PARSER_CONFIG_FILE
        if saved.is_file():
            settings = json.loads(saved.read_text(encoding="utf-8"))
            parser = cls(encoder, settings["relations"], settings["arc_size"], settings["relation_size"])
            parser.classifier.load_state_dict(load_file(directory / PARSER_WEIGHTS_FILE))
            return parser
        if id2label is None:
            raise ValueError(f"{directory}: no {PARSER_CONFIG_FILE}, and no relation names (id2label) for a new parser head")
        return cls(encoder, [id2label[index] for index in range(len(id2label))])

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.encoder.save_pretrained(directory)
        settings = {"relations": self.relation_names, "arc_size": self.arc_size, "relation_size": self.relation_size}
        (directory / PARSER_CONFIG_FILE).write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
        save_file({name: tensor.contiguous() for name, tensor in self.classifier.state_dict().items()}, directory / PARSER_WEIGHTS_FILE)

    # --- the forward pass ----------------------------------------------------------------------------

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        token_type_ids: Tensor | None = None,
        word_starts: Tensor | None = None,
        heads: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ParserOutput:
        """`word_starts` (batch, words): each word's first sub-word position, 0 past a sentence's last
        word; without it every sub-word but the first and last counts as a word (the throughput
        benchmarks time plain text). `heads` (1-based word index, 0 the root, IGNORE_INDEX where
        unknown) places the relation scores; with `labels` as well, the loss is the gold arcs' and
        relations' cross-entropy."""
        encoder_inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            encoder_inputs["token_type_ids"] = token_type_ids
        out = self.encoder(**encoder_inputs, output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        if word_starts is None:
            word_starts = every_subword(attention_mask)
        states = out.last_hidden_state
        positions = torch.cat([torch.zeros_like(word_starts[:, :1]), word_starts], dim=1)
        candidates = states.gather(1, positions[..., None].expand(-1, -1, states.shape[-1]))  # root, then words
        words = candidates[:, 1:]
        arc_logits = self.classifier.arcs(words, candidates).float()
        arc_logits = arc_logits.masked_fill(~candidate_mask(word_starts), torch.finfo(arc_logits.dtype).min)
        label_heads = arc_logits.argmax(-1)
        if heads is not None:
            label_heads = torch.where(heads == IGNORE_INDEX, label_heads, heads)
        head_states = candidates.gather(1, label_heads[..., None].expand(-1, -1, candidates.shape[-1]))
        logits = self.classifier.relations(words, head_states)
        loss = None
        if heads is not None and labels is not None:
            loss = F.cross_entropy(arc_logits.flatten(0, 1), heads.flatten(), ignore_index=IGNORE_INDEX) + F.cross_entropy(
                logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX
            )
        return ParserOutput(loss, arc_logits, logits, label_heads, word_starts > 0, out.hidden_states, out.attentions)

    @torch.inference_mode()
    def parse(self, tokenizer, words: Sequence[str], max_length: int = 128, tree: bool = False) -> tuple[list[int], list[str]]:
        """One pre-split sentence: each word's head (0: the root) and relation name; with `tree`, heads
        that form a well-formed tree (`tree_heads`), the relations scored at them."""
        from bistil_ray.method.batching import collate, tokenize_parsed

        example = tokenize_parsed(tokenizer, [list(words)], None, None, max_length)[0]
        batch = collate([example], tokenizer.pad_token_id)
        device = next(self.parameters()).device
        inputs = {key: value.to(device) for key, value in batch.items()}
        out = self(**inputs)
        if tree:
            out = tree_parses(self, inputs, out)
        heads = np.zeros(len(words), dtype=np.int64)
        relations = np.zeros(len(words), dtype=np.int64)
        kept = len(example["word_starts"])
        heads[:kept] = out.label_heads[0, :kept].cpu().numpy()
        relations[:kept] = out.logits[0, :kept].argmax(-1).cpu().numpy()
        return heads.tolist(), [self.relation_names[index] for index in relations]


def every_subword(attention_mask: Tensor) -> Tensor:
    """Word starts for plain text: every real position but the first and the last (special tokens)."""
    lengths = attention_mask.sum(1)
    positions = torch.arange(1, attention_mask.shape[1] - 1, device=attention_mask.device).expand(attention_mask.shape[0], -1)
    return torch.where(positions < (lengths - 1)[:, None], positions, 0)


def candidate_mask(word_starts: Tensor) -> Tensor:
    """(batch, words, 1 + words): which heads a word may take: the root or another real word."""
    words = word_starts > 0
    candidates = torch.cat([torch.ones_like(words[:, :1]), words], dim=1)
    mask = words[:, :, None] & candidates[:, None, :]
    itself = torch.eye(words.shape[1], dtype=torch.bool, device=words.device)
    mask[:, :, 1:] &= ~itself
    return mask


def predicted_parses(out: ParserOutput) -> list[np.ndarray]:
    """Per sentence, (words, 2): each real word's predicted head and relation id."""
    relations = out.logits.argmax(-1)
    parses = []
    for heads, labels, real in zip(out.label_heads.cpu(), relations.cpu(), out.word_mask.cpu()):
        parses.append(np.stack([heads[real].numpy(), labels[real].numpy()], axis=1))
    return parses


def tree_parses(parser: "BiaffineParser", inputs: dict[str, Tensor], out: ParserOutput) -> ParserOutput:
    """`out` with each sentence's heads made a well-formed tree (`tree_heads`) and its relations scored
    at them (the encoder runs again)."""
    heads = torch.full_like(out.label_heads, IGNORE_INDEX)
    for row, real in enumerate(out.word_mask):
        kept = int(real.sum())
        heads[row, :kept] = torch.tensor(tree_heads(out.arc_logits[row, :kept, : kept + 1]), device=heads.device)
    return parser(**inputs, heads=heads)


def is_tree(heads: Sequence[int]) -> bool:
    """Whether `heads` (1-based, 0 the root) reach the root from every word, with no cycle."""
    for start in range(1, len(heads) + 1):
        seen, word = set(), start
        while word != 0:
            if word in seen:
                return False
            seen.add(word)
            word = heads[word - 1]
    return True


def tree_heads(arc_logits: Tensor) -> list[int]:
    """(words, 1 + words) arc scores of one sentence -> the highest-scoring well-formed tree's heads:
    the greedy heads where they already form one, else the maximum spanning arborescence rooted at 0
    (Chu-Liu-Edmonds) over each word's log-probabilities of its heads."""
    scores = torch.log_softmax(arc_logits.float(), dim=-1).cpu().numpy()
    greedy = scores.argmax(-1).tolist()
    if is_tree(greedy):
        return greedy
    graph = nx.DiGraph()
    words = scores.shape[0]
    for word in range(1, words + 1):
        for head in range(words + 1):
            if head != word and np.isfinite(scores[word - 1, head]):
                graph.add_edge(head, word, weight=float(scores[word - 1, head]))
    tree = nx.maximum_spanning_arborescence(graph)
    return [next(iter(tree.predecessors(word))) for word in range(1, words + 1)]
