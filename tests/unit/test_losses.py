import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertModel

from bistil_ray.errors import UserInputError
from bistil_ray.method.losses import (
    LossWeights,
    attention_implementation,
    attention_mse,
    distillation_loss,
    forward_kwargs,
    hard_label_loss,
    hidden_mse,
    masked_lm_loss,
    soft_cross_entropy,
)

BATCH, SEQ, WIDTH, HEADS = 3, 7, 32, 4
# The last two positions of the first sequence and the last one of the second are padding.
MASK = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1]])


def random_hidden(layers: int, width: int = WIDTH, requires_grad: bool = False) -> list[torch.Tensor]:
    return [torch.randn(BATCH, SEQ, width, requires_grad=requires_grad) for _ in range(layers)]


def random_attention(layers: int) -> list[torch.Tensor]:
    scores = torch.randn(layers, BATCH, HEADS, SEQ, SEQ)
    scores = scores.masked_fill(~MASK.bool()[None, :, None, None, :], float("-inf"))
    return list(scores.softmax(-1))


def perturb_padding(tensors: list[torch.Tensor], padding: torch.Tensor) -> list[torch.Tensor]:
    return [torch.where(padding, tensor + 5.0, tensor) for tensor in tensors]


def tiny_bert(attn_implementation: str) -> BertModel:
    config = BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        attn_implementation=attn_implementation,
    )
    torch.manual_seed(0)
    return BertModel(config).eval()


def test_hidden_mse_zero_for_identical_and_positive_otherwise():
    teacher = random_hidden(5)
    pairs = [(0, 0), (1, 2), (2, 4)]
    student = [teacher[0], teacher[2], teacher[4]]
    assert hidden_mse(student, teacher, pairs, MASK).item() == 0.0
    assert hidden_mse(random_hidden(3), teacher, pairs, MASK).item() > 0.0


def test_hidden_mse_ignores_padding_positions():
    student, teacher = random_hidden(2), random_hidden(2)
    padding = ~MASK.bool()[..., None]
    pairs = [(0, 0), (1, 1)]
    expected = hidden_mse(student, teacher, pairs, MASK)
    assert torch.equal(hidden_mse(perturb_padding(student, padding), teacher, pairs, MASK), expected)
    assert torch.equal(hidden_mse(student, perturb_padding(teacher, padding), pairs, MASK), expected)
    assert not torch.equal(hidden_mse(student, teacher, pairs, torch.ones_like(MASK)), expected)


def test_hidden_mse_projects_a_wider_teacher():
    teacher = random_hidden(2, width=48)
    projection = torch.linalg.qr(torch.randn(48, WIDTH)).Q
    student = [hidden @ projection for hidden in teacher]
    pairs = [(0, 0), (1, 1)]
    assert hidden_mse(student, teacher, pairs, MASK, projection).item() < 1e-10
    assert hidden_mse(student, teacher, pairs, MASK, [projection, torch.eye(48, WIDTH)]).item() > 0.0


def test_attention_mse_zero_for_identical_and_positive_otherwise():
    teacher = random_attention(4)
    student = [teacher[1], teacher[3]]
    assert attention_mse(student, teacher, [(0, 1), (1, 3)], MASK).item() == 0.0
    assert attention_mse(random_attention(2), teacher, [(0, 1), (1, 3)], MASK).item() > 0.0


def test_attention_mse_ignores_padding_rows_and_columns():
    student, teacher = random_attention(2), random_attention(2)
    real = MASK.bool()
    padding = ~(real[:, None, :, None] & real[:, None, None, :])
    pairs = [(0, 0), (1, 1)]
    expected = attention_mse(student, teacher, pairs, MASK)
    assert torch.equal(attention_mse(perturb_padding(student, padding), teacher, pairs, MASK), expected)
    assert torch.equal(attention_mse(student, perturb_padding(teacher, padding), pairs, MASK), expected)


def test_attention_mse_explains_missing_maps():
    with pytest.raises(ValueError, match="eager"):
        attention_mse((), random_attention(1), [(0, 0)], MASK)


def test_soft_cross_entropy_is_kl_plus_teacher_entropy():
    student, teacher, temperature = torch.randn(6, 5), torch.randn(6, 5), 2.0
    teacher_probs = F.softmax(teacher / temperature, -1)
    kl = F.kl_div(F.log_softmax(student / temperature, -1), teacher_probs, reduction="batchmean")
    entropy = -(teacher_probs * teacher_probs.log()).sum(-1).mean()
    assert torch.allclose(soft_cross_entropy(student, teacher, temperature), kl + entropy, atol=1e-6)
    assert torch.allclose(soft_cross_entropy(teacher, teacher, temperature), entropy, atol=1e-6)


def test_hard_label_loss_skips_ignored_positions():
    logits = torch.randn(2, 4, 10)
    labels = torch.tensor([[3, -100, 7, -100], [-100, 1, -100, -100]])
    kept = labels != -100
    expected = F.cross_entropy(logits[kept], labels[kept])
    assert torch.allclose(masked_lm_loss(logits, labels), expected)
    perfect = F.one_hot(labels.clamp(min=0), 10).float() * 100
    assert masked_lm_loss(perfect, labels).item() < 1e-6
    assert hard_label_loss(torch.randn(3, 4), torch.tensor([0, 1, 2])).item() > 0.0


def test_gradients_reach_the_student_only():
    student_hidden, teacher_hidden = random_hidden(2, requires_grad=True), random_hidden(2, requires_grad=True)
    student_logits, teacher_logits = torch.randn(BATCH, 5, requires_grad=True), torch.randn(BATCH, 5, requires_grad=True)
    weights = LossWeights(hidden=1.0, attn=0.0, ce=1.0)
    total, _ = distillation_loss(
        weights,
        attention_mask=MASK,
        student_hidden=student_hidden,
        teacher_hidden=teacher_hidden,
        hidden_pairs=[(0, 0), (1, 1)],
        student_logits=student_logits,
        teacher_logits=teacher_logits,
    )
    total.backward()
    assert all(hidden.grad is not None and hidden.grad.abs().sum() > 0 for hidden in student_hidden)
    assert student_logits.grad is not None and student_logits.grad.abs().sum() > 0
    assert all(hidden.grad is None for hidden in teacher_hidden) and teacher_logits.grad is None


def test_distillation_loss_sums_weighted_terms_and_skips_zero_weights():
    student_hidden, teacher_hidden = random_hidden(2), random_hidden(2)
    student_attn, teacher_attn = random_attention(2), random_attention(2)
    common = dict(
        attention_mask=MASK,
        student_hidden=student_hidden,
        teacher_hidden=teacher_hidden,
        hidden_pairs=[(0, 0), (1, 1)],
        student_attn=student_attn,
        teacher_attn=teacher_attn,
        attention_pairs=[(0, 1)],
    )
    total, parts = distillation_loss(LossWeights(hidden=2.0, attn=3.0), **common)
    assert set(parts) == {"loss_hidden", "loss_attn"}
    assert total.item() == pytest.approx(2.0 * parts["loss_hidden"] + 3.0 * parts["loss_attn"], rel=1e-6)

    # Weight 0 means the term's inputs are never looked at: None is fine.
    total, parts = distillation_loss(
        LossWeights(hidden=0.0, attn=0.0, ce=1.0),
        attention_mask=MASK,
        student_logits=torch.randn(BATCH, 5),
        teacher_logits=torch.randn(BATCH, 5),
    )
    assert set(parts) == {"loss_ce"} and total.item() == pytest.approx(parts["loss_ce"])
    with pytest.raises(ValueError, match="teacher_logits"):
        distillation_loss(LossWeights(ce=1.0), **common, student_logits=torch.randn(BATCH, 5))


def test_token_level_soft_labels_use_labelled_positions_only():
    student, teacher = torch.randn(BATCH, SEQ, 5), torch.randn(BATCH, SEQ, 5)
    labels = torch.where(MASK.bool(), 1, -100)
    labels[:, 0] = -100
    weights = LossWeights(hidden=0.0, attn=0.0, ce=1.0)
    total, _ = distillation_loss(weights, attention_mask=MASK, student_logits=student, teacher_logits=teacher, labels=labels)
    kept = labels != -100
    assert torch.allclose(total, soft_cross_entropy(student[kept], teacher[kept], 2.0))


def test_loss_weights_reject_bad_values_and_drive_forward_kwargs():
    with pytest.raises(UserInputError, match="hidden"):
        LossWeights(hidden=-1.0)
    with pytest.raises(UserInputError, match="all loss weights"):
        LossWeights(hidden=0.0, attn=0.0)
    with pytest.raises(UserInputError, match="temperature"):
        LossWeights(temperature=0.0)
    weights = LossWeights(hidden=1.0, attn=0.0, ce=0.5)
    assert forward_kwargs(weights) == {"output_hidden_states": True, "output_attentions": False}
    assert (weights.needs_teacher_logits, attention_implementation(weights)) == (True, "sdpa")
    assert attention_implementation(LossWeights()) == "eager"


def test_eager_attention_matches_sdpa_and_returns_maps():
    input_ids = torch.randint(0, 50, (BATCH, SEQ))
    eager, sdpa = tiny_bert("eager"), tiny_bert("sdpa")
    assert (eager.config._attn_implementation, sdpa.config._attn_implementation) == ("eager", "sdpa")
    with torch.no_grad():
        eager_out = eager(input_ids, attention_mask=MASK, output_hidden_states=True, output_attentions=True)
        sdpa_out = sdpa(input_ids, attention_mask=MASK, output_hidden_states=True, output_attentions=True)
    real = MASK.bool()
    for eager_hidden, sdpa_hidden in zip(eager_out.hidden_states, sdpa_out.hidden_states, strict=True):
        assert torch.allclose(eager_hidden[real], sdpa_hidden[real], atol=1e-5)
    assert len(sdpa_out.attentions) == 0
    assert len(eager_out.attentions) == 4
    maps = eager_out.attentions[0]
    assert maps.shape == (BATCH, HEADS, SEQ, SEQ)
    assert torch.allclose(maps.sum(-1), torch.ones(BATCH, HEADS, SEQ), atol=1e-5)
    assert torch.all(maps[0, :, :, 5:] == 0)
    assert attention_mse(eager_out.attentions, eager_out.attentions, [(0, 0), (3, 3)], MASK).item() == 0.0
