"""Distillation losses of BiStil: hidden-state MSE, attention-map MSE, soft cross-entropy, hard labels.

Every term is a pure function of tensors; `distillation_loss` adds the terms whose weight is positive
and never touches the inputs of the others, so a caller only asks the models for what is used
(`forward_kwargs`). Teacher tensors (and the width projection) are detached here: gradients reach
the student only, whatever the caller did. Terms are computed in float32 so that bf16/fp16 autocast
does not round away the small differences distillation works on.

Attention maps need the eager attention kernel. In transformers 5.x, BERT-like models dispatch
attention through `ALL_ATTENTION_FUNCTIONS[config._attn_implementation]`; the default, "sdpa",
returns no weights, so `output_attentions=True` yields an empty tuple (and one logged warning), not
an error. Only `eager_attention_forward` returns the softmax probabilities. A model distilled with
`attn > 0` must therefore run eager attention, teacher and student alike:

    AutoModel.from_pretrained(path, attn_implementation=attention_implementation(weights))
    model.set_attn_implementation(attention_implementation(weights))   # an already loaded model

With `attn == 0` keep "sdpa": the fused kernel is faster and gives the same hidden states.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from bistil_ray.errors import UserInputError

IGNORE_INDEX = -100
T = TypeVar("T")


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (the `alpha_*` of the config) and the soft-label temperature."""

    hidden: float = 1.0
    attn: float = 1.0
    ce: float = 0.0
    task: float = 0.0
    mlm: float = 0.0
    temperature: float = 2.0

    def __post_init__(self) -> None:
        terms = [field.name for field in fields(self) if field.name != "temperature"]
        for name in terms:
            if getattr(self, name) < 0:
                raise UserInputError(f"loss weight {name} must be >= 0, got {getattr(self, name)}")
        if all(getattr(self, name) == 0 for name in terms):
            raise UserInputError(f"all loss weights ({', '.join(terms)}) are 0: nothing to train on")
        if self.temperature <= 0:
            raise UserInputError(f"temperature must be > 0, got {self.temperature}")

    @property
    def needs_hidden(self) -> bool:
        return self.hidden > 0

    @property
    def needs_attentions(self) -> bool:
        return self.attn > 0

    @property
    def needs_teacher_logits(self) -> bool:
        return self.ce > 0


def forward_kwargs(weights: LossWeights) -> dict[str, bool]:
    """What to ask of a model's forward so that it returns exactly what the losses use."""
    return {"output_hidden_states": weights.needs_hidden, "output_attentions": weights.needs_attentions}


def attention_implementation(weights: LossWeights) -> str:
    """The `attn_implementation` to load teacher and student with (see the module docstring)."""
    return "eager" if weights.needs_attentions else "sdpa"


def hidden_mse(
    student_hidden: Sequence[Tensor],
    teacher_hidden: Sequence[Tensor],
    pairs: Sequence[tuple[int, int]],
    attention_mask: Tensor,
    projection: Tensor | Sequence[Tensor] | None = None,
) -> Tensor:
    """Mean over `pairs` of the MSE between student and teacher hidden states at real tokens.

    Hidden states are (batch, seq, width); padding positions carry no text and are left out.
    `projection` (teacher width x student width) maps teacher states to a narrower student: one
    matrix for every pair, or one per pair.
    """
    if not pairs:
        raise ValueError("hidden_mse: no layer pairs given")
    projections = _per_pair(projection, len(pairs))
    tokens = attention_mask.bool()
    losses = []
    for (student_index, teacher_index), matrix in zip(pairs, projections):
        student = student_hidden[student_index].float()
        teacher = teacher_hidden[teacher_index].detach().float()
        if matrix is not None:
            teacher = teacher @ matrix.detach().float()
        losses.append(F.mse_loss(student[tokens], teacher[tokens]))
    return torch.stack(losses).mean()


def attention_mse(
    student_attn: Sequence[Tensor],
    teacher_attn: Sequence[Tensor],
    pairs: Sequence[tuple[int, int]],
    attention_mask: Tensor,
) -> Tensor:
    """Mean over `pairs` of the MSE between attention maps, over real query rows and key columns.

    The maps compared are attention *probabilities* (post-softmax), as in the BiStil reference, not
    TinyBERT's pre-softmax scores: probabilities are what transformers returns (scores would need a
    patched attention function), they are bounded in [0, 1], and they do not depend on the large
    negative constant a kernel adds at padded keys. Padded key columns are exactly 0 in both maps;
    padded query rows still attend to the real keys and hold arbitrary values, so both are
    excluded. The student must run without attention dropout (BiStil sets it to 0), since eager
    attention returns the maps after dropout.
    """
    if len(student_attn) == 0 or len(teacher_attn) == 0:
        raise ValueError("a model returned no attention maps: load it with attn_implementation='eager'")
    if not pairs:
        raise ValueError("attention_mse: no layer pairs given")
    tokens = attention_mask.bool()
    real_entries = tokens[:, None, :, None] & tokens[:, None, None, :]
    losses = []
    for student_index, teacher_index in pairs:
        student = student_attn[student_index].float()
        teacher = teacher_attn[teacher_index].detach().float()
        if student.shape != teacher.shape:
            raise ValueError(f"attention maps differ: student {tuple(student.shape)}, teacher {tuple(teacher.shape)}")
        squared = torch.where(real_entries, (student - teacher).square(), 0.0)
        losses.append(squared.sum() / (real_entries.sum() * student.shape[1]))
    return torch.stack(losses).mean()


def soft_cross_entropy(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Cross-entropy of the student's tempered distribution against the teacher's, mean over rows.

    Not multiplied by T^2 (Hinton et al. do so to keep its gradient on the scale of a hard-label
    term): this matches the BiStil reference, whose alpha_ce defaults were tuned without it, and
    with alpha_task = 0 by default the scale is absorbed by the learning rate and the weights.
    Equals KL(teacher || student) + the teacher's entropy, which does not depend on the student.
    """
    teacher_probs = F.softmax(teacher_logits.detach().float() / temperature, dim=-1)
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return -(teacher_probs * student_log_probs).sum(-1).mean()


def hard_label_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy against gold labels, skipping positions labelled -100.

    Shapes: (batch, classes) with (batch,) labels, or (batch, seq, classes) with (batch, seq).
    """
    return F.cross_entropy(logits.float().flatten(0, -2), labels.flatten(), ignore_index=IGNORE_INDEX)


masked_lm_loss = hard_label_loss


def distillation_loss(
    weights: LossWeights,
    *,
    attention_mask: Tensor,
    student_hidden: Sequence[Tensor] | None = None,
    teacher_hidden: Sequence[Tensor] | None = None,
    hidden_pairs: Sequence[tuple[int, int]] = (),
    student_attn: Sequence[Tensor] | None = None,
    teacher_attn: Sequence[Tensor] | None = None,
    attention_pairs: Sequence[tuple[int, int]] = (),
    projection: Tensor | Sequence[Tensor] | None = None,
    student_logits: Tensor | None = None,
    teacher_logits: Tensor | None = None,
    labels: Tensor | None = None,
    mlm_logits: Tensor | None = None,
    mlm_labels: Tensor | None = None,
    student_arc_logits: Tensor | None = None,
    teacher_arc_logits: Tensor | None = None,
    heads: Tensor | None = None,
    word_mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The weighted sum of the terms with a positive weight, and each term's value for logging.

    Terms with weight 0 are not computed, and their inputs may be None. Token-level logits
    (batch, seq, classes) enter the soft cross-entropy only at positions with a gold label (when
    `labels` is given, as the reference does) or else at real tokens. A parser's (arc logits given)
    soft cross-entropy is the sum of its two, over each real word (`word_mask`): its distribution over
    heads, and over relations with the head both models were scored at; its gold-label term likewise
    adds the heads' cross-entropy to the relations'.
    """
    terms: dict[str, Tensor] = {}
    if weights.needs_hidden:
        student, teacher = _require(student_hidden, "student_hidden"), _require(teacher_hidden, "teacher_hidden")
        terms["hidden"] = hidden_mse(student, teacher, hidden_pairs, attention_mask, projection)
    if weights.needs_attentions:
        student, teacher = _require(student_attn, "student_attn"), _require(teacher_attn, "teacher_attn")
        terms["attn"] = attention_mse(student, teacher, attention_pairs, attention_mask)
    if weights.needs_teacher_logits:
        student, teacher = _require(student_logits, "student_logits"), _require(teacher_logits, "teacher_logits")
        arcs = None
        if student_arc_logits is not None:
            words = _require(word_mask, "word_mask")
            arcs = soft_cross_entropy(student_arc_logits[words], _require(teacher_arc_logits, "teacher_arc_logits")[words], weights.temperature)
            student, teacher = student[words], teacher[words]
        elif student.dim() == 3:
            positions = labels != IGNORE_INDEX if labels is not None else attention_mask.bool()
            student, teacher = student[positions], teacher[positions]
        terms["ce"] = soft_cross_entropy(student, teacher, weights.temperature) + (arcs if arcs is not None else 0.0)
    if weights.task > 0:
        terms["task"] = hard_label_loss(_require(student_logits, "student_logits"), _require(labels, "labels"))
        if student_arc_logits is not None:
            terms["task"] = terms["task"] + hard_label_loss(student_arc_logits, _require(heads, "heads"))
    if weights.mlm > 0:
        terms["mlm"] = masked_lm_loss(_require(mlm_logits, "mlm_logits"), _require(mlm_labels, "mlm_labels"))

    total = torch.stack([getattr(weights, name) * value for name, value in terms.items()]).sum()
    parts = {f"loss_{name}": value.item() for name, value in terms.items()}
    return total, parts


def _per_pair(projection: Tensor | Sequence[Tensor] | None, count: int) -> list[Tensor | None]:
    if projection is None or isinstance(projection, Tensor):
        return [projection] * count
    if len(projection) != count:
        raise ValueError(f"got {len(projection)} projections for {count} hidden-state pairs")
    return list(projection)


def _require(value: T | None, name: str) -> T:
    if value is None:
        raise ValueError(f"distillation_loss: {name} is needed by a term with a positive weight")
    return value
