"""Lottery-Ticket Sparse Fine-Tuning (LT-SFT; Ansell et al., 2022), the phase-2 training scheme.

    body = sparsifiable_parameters(model)           # the task head stays dense
    theta_0 = snapshot(body)
    ... fine-tune everything ...                    # the dense phase
    masks = select_lottery_ticket(body, theta_0, density)
    reset_to_initial(body, theta_0)
    update = SparseUpdate(body, masks, theta_0)
    ... each step: loss.backward(); update.mask_gradients(); clip; optimizer.step();
        update.restore_frozen_entries() ...         # the sparse phase

Weight decay: AdamW decays every parameter that has a gradient, and masked gradients are zeros, not
None, so the decay (and any momentum left from earlier steps) would move frozen entries too.
`restore_frozen_entries` copies theta_0 back into them after every step, so decay acts on kept
entries only and frozen entries stay bit-identical to theta_0. Kept entries decay towards 0, as
with the reference's ordinary AdamW.

Under data parallelism masks must be identical on every rank. `select_lottery_ticket` breaks ties
by position, so ranks holding identical parameters (as DDP keeps them) select identical tickets;
masking gradients after the all-reduce is equivalent to masking before it.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from bistil_ray.errors import UserInputError

NORM_LAYERS = (nn.LayerNorm, nn.RMSNorm)


def sparsifiable_parameters(
    model: nn.Module,
    *,
    head_prefixes: Sequence[str] = ("classifier", "pooler"),
    freeze_layer_norm: bool = False,
) -> dict[str, nn.Parameter]:
    """The trainable body parameters that LT-SFT sparsifies, by name.

    A parameter belongs to the head (trained densely, not returned) when a component of its dotted
    name is one of `head_prefixes` ("classifier.weight", "bert.pooler.dense.weight"). With
    `freeze_layer_norm` the layer-norm parameters are frozen here (requires_grad=False), so they
    are neither sparsified nor trained, as the reference does for token tasks.
    """
    norm_parameters = {
        id(parameter)
        for module in model.modules()
        if isinstance(module, NORM_LAYERS)
        for parameter in module.parameters(recurse=False)
    }
    body: dict[str, nn.Parameter] = {}
    for name, parameter in model.named_parameters():
        if freeze_layer_norm and id(parameter) in norm_parameters:
            parameter.requires_grad_(False)
        if parameter.requires_grad and not _in_head(name, head_prefixes):
            body[name] = parameter
    return body


def snapshot(params: dict[str, Tensor]) -> dict[str, Tensor]:
    """Detached copies of the parameters: theta_0, the point the sparse difference is taken from."""
    return {name: parameter.detach().clone() for name, parameter in params.items()}


@torch.no_grad()
def select_lottery_ticket(
    params: dict[str, Tensor], initial: dict[str, Tensor], density: float
) -> dict[str, Tensor]:
    """Boolean masks keeping the k = floor(density * total) entries that moved most from theta_0.

    One global ranking over all entries of all `params` by |theta - theta_0|. The k-th largest
    value is found with `kthvalue` (a selection, cheaper than sorting 100M entries); entries above
    it are kept, and entries equal to it fill the remaining places in flat order, so ties never
    push the count past k and every rank picks the same ticket.
    """
    if not 0 < density <= 1:
        raise UserInputError(f"density must be in (0, 1], got {density}")
    _check_same_names(params, initial)
    movement = torch.cat([(params[name] - initial[name]).abs().flatten() for name in params])
    total = movement.numel()
    keep_count = math.floor(density * total)
    if keep_count == 0:
        return {name: torch.zeros_like(parameter, dtype=torch.bool) for name, parameter in params.items()}

    threshold = movement.kthvalue(total - keep_count + 1).values
    kept = movement > threshold
    places_left = keep_count - int(kept.sum())
    tied = (movement == threshold).nonzero().flatten()
    kept[tied[:places_left]] = True
    return _split_like(kept, params)


@torch.no_grad()
def reset_to_initial(params: dict[str, Tensor], initial: dict[str, Tensor]) -> None:
    """Copy theta_0 back into the parameters, in place and bit-exactly."""
    _check_same_names(params, initial)
    for name, parameter in params.items():
        parameter.copy_(initial[name])


class SparseUpdate:
    """During the sparse phase: only kept entries change.

    Call `mask_gradients` after backward (after DDP's all-reduce) and before gradient clipping and
    `optimizer.step()`, so the clipping norm counts kept entries only; call
    `restore_frozen_entries` right after `optimizer.step()`. `state_dict` holds the masks only;
    theta_0 is the phase-1 student, stored with it.
    """

    def __init__(self, params: dict[str, Tensor], masks: dict[str, Tensor], initial: dict[str, Tensor]) -> None:
        _check_same_names(params, initial)
        self.params = params
        self.initial = initial
        self.load_state_dict(masks)

    @torch.no_grad()
    def mask_gradients(self) -> None:
        names = [name for name, parameter in self.params.items() if parameter.grad is not None]
        torch._foreach_mul_([self.params[name].grad for name in names], [self._keep[name] for name in names])

    @torch.no_grad()
    def restore_frozen_entries(self) -> None:
        # theta * keep + theta_0 * (1 - keep): exact for both kinds of entry (x * 1 + 0 and
        # x * 0 + theta_0), and two multi-tensor passes over the parameters instead of a torch.where
        # per tensor (as is the multiply above, instead of masked_fill_ on the gradients).
        parameters = list(self.params.values())
        torch._foreach_mul_(parameters, list(self._keep.values()))
        torch._foreach_add_(parameters, list(self._initial_frozen.values()))

    def kept_count(self) -> int:
        return sum(int(mask.sum()) for mask in self.masks.values())

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.masks)

    def load_state_dict(self, masks: dict[str, Tensor]) -> None:
        _check_same_names(self.params, masks)
        for name, parameter in self.params.items():
            mask = masks[name]
            if mask.shape != parameter.shape or mask.dtype != torch.bool:
                expected, got = tuple(parameter.shape), (mask.dtype, tuple(mask.shape))
                raise ValueError(f"mask for {name}: expected torch.bool {expected}, got {got}")
        self.masks = {name: masks[name].to(parameter.device) for name, parameter in self.params.items()}
        # What every step multiplies and adds, in the parameters' dtype, computed once.
        self._keep = {name: mask.to(self.params[name].dtype) for name, mask in self.masks.items()}
        self._initial_frozen = {name: self.initial[name] * ~mask for name, mask in self.masks.items()}


def _in_head(name: str, head_prefixes: Sequence[str]) -> bool:
    return any(f".{prefix}." in f".{name}" for prefix in head_prefixes)


def _split_like(flat: Tensor, params: dict[str, Tensor]) -> dict[str, Tensor]:
    """Cut a flat tensor into independent pieces shaped like `params` (no shared storage, so each
    piece can be saved on its own, e.g. with safetensors)."""
    pieces = flat.split([parameter.numel() for parameter in params.values()])
    return {name: piece.view_as(parameter).clone() for (name, parameter), piece in zip(params.items(), pieces)}


def _check_same_names(params: dict[str, Tensor], other: dict[str, Tensor]) -> None:
    if params.keys() != other.keys():
        missing, extra = sorted(params.keys() - other.keys()), sorted(other.keys() - params.keys())
        raise ValueError(f"parameter names differ: missing {missing[:3]}, unexpected {extra[:3]}")
