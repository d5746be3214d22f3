import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertForSequenceClassification

from bistil_ray.errors import UserInputError
from bistil_ray.method.sparse_finetuning import (
    SparseUpdate,
    reset_to_initial,
    select_lottery_ticket,
    snapshot,
    sparsifiable_parameters,
)

DENSITY = 0.1


@pytest.fixture
def model() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, num_labels=3
    )
    return BertForSequenceClassification(config)


def train(model: BertForSequenceClassification, steps: int, update: SparseUpdate | None = None) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        input_ids = torch.randint(0, 40, (8, 6), generator=generator)
        labels = torch.randint(0, 3, (8,), generator=generator)
        model(input_ids=input_ids, labels=labels).loss.backward()
        if update is not None:
            update.mask_gradients()
        optimizer.step()
        optimizer.zero_grad()
        if update is not None:
            update.restore_frozen_entries()


def head_parameters(model: BertForSequenceClassification) -> dict[str, torch.Tensor]:
    return {name: p for name, p in model.named_parameters() if name.startswith(("classifier", "bert.pooler"))}


def test_sparse_phase_moves_only_the_kept_entries(model):
    body = sparsifiable_parameters(model)
    assert "bert.embeddings.word_embeddings.weight" in body
    assert not any("classifier" in name or "pooler" in name for name in body)
    theta_0 = snapshot(body)

    train(model, steps=3)
    masks = select_lottery_ticket(body, theta_0, DENSITY)
    reset_to_initial(body, theta_0)
    assert all(torch.equal(body[name], theta_0[name]) for name in body)
    head_before_sparse_phase = snapshot(head_parameters(model))
    update = SparseUpdate(body, masks, theta_0)
    train(model, steps=3, update=update)

    total = sum(p.numel() for p in body.values())
    changed_count = 0
    for name, difference in ((name, body[name].detach() - theta_0[name]) for name in body):
        changed = difference != 0
        assert not (changed & ~masks[name]).any(), name
        assert torch.equal(body[name][~masks[name]], theta_0[name][~masks[name]]), name
        changed_count += int(changed.sum())
    assert 0 < changed_count <= update.kept_count() == math.floor(DENSITY * total)
    for name, parameter in head_parameters(model).items():
        assert (parameter != head_before_sparse_phase[name]).float().mean() > 0.9, name


def test_frozen_layer_norms_are_neither_sparsified_nor_trained(model):
    body = sparsifiable_parameters(model, freeze_layer_norm=True)
    norms = {name: p.detach().clone() for name, p in model.named_parameters() if "LayerNorm" in name}
    assert norms and not any("LayerNorm" in name for name in body)
    theta_0 = snapshot(body)
    train(model, steps=2)
    update = SparseUpdate(body, select_lottery_ticket(body, theta_0, DENSITY), theta_0)
    reset_to_initial(body, theta_0)
    train(model, steps=2, update=update)
    parameters = dict(model.named_parameters())
    assert all(torch.equal(parameters[name], value) for name, value in norms.items())


def test_ticket_keeps_exactly_the_largest_movements():
    torch.manual_seed(0)
    params = {"a": torch.randn(10, 7), "b": torch.randn(33)}
    initial = {name: torch.zeros_like(p) for name, p in params.items()}
    movement = torch.cat([p.abs().flatten() for p in params.values()])
    for density in (0.05, 0.3, 0.999):
        masks = select_lottery_ticket(params, initial, density)
        kept = torch.cat([mask.flatten() for mask in masks.values()])
        assert int(kept.sum()) == math.floor(density * movement.numel())
        assert movement[kept].min() > movement[~kept].max()


def test_ties_never_exceed_the_budget():
    params = {"a": torch.ones(10, 10), "b": torch.full((25,), -1.0)}
    initial = {name: torch.zeros_like(p) for name, p in params.items()}
    masks = select_lottery_ticket(params, initial, 0.3)
    assert sum(int(mask.sum()) for mask in masks.values()) == math.floor(0.3 * 125)


def test_density_bounds():
    params = {"a": torch.randn(20)}
    initial = {"a": torch.zeros(20)}
    assert select_lottery_ticket(params, initial, 1.0)["a"].all()
    assert not select_lottery_ticket(params, initial, 0.01)["a"].any()
    for density in (0.0, 1.5):
        with pytest.raises(UserInputError, match="density"):
            select_lottery_ticket(params, initial, density)


def test_masks_round_trip_through_safetensors(model, tmp_path):
    body = sparsifiable_parameters(model)
    theta_0 = snapshot(body)
    train(model, steps=1)
    update = SparseUpdate(body, select_lottery_ticket(body, theta_0, DENSITY), theta_0)
    save_file(update.state_dict(), tmp_path / "masks.safetensors")

    restored = SparseUpdate(body, {name: torch.ones_like(p, dtype=torch.bool) for name, p in body.items()}, theta_0)
    restored.load_state_dict(load_file(tmp_path / "masks.safetensors"))
    assert restored.kept_count() == update.kept_count()
    assert all(torch.equal(restored.masks[name], update.masks[name]) for name in body)
    with pytest.raises(ValueError, match="bert.embeddings"):
        restored.load_state_dict({name: mask[..., :1] for name, mask in update.state_dict().items()})
