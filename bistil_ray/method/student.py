"""Student initialisation: the teacher with fewer (and optionally narrower) layers.

The student is the teacher's own class with `num_hidden_layers = depth`; its embeddings, heads and
pooler are copies of the teacher's, and student layer j is a copy of teacher layer `teacher_layers[j]`.
`LayerMap` records that correspondence for the distillation losses.

Width reduction (an option, off by default) divides the hidden and intermediate sizes by a factor.
The residual stream is projected onto its top singular directions: with P (teacher_hidden x
student_hidden, orthonormal columns), every weight that reads the stream becomes W P and every weight
that writes it P^T W, so the student's hidden state approximates the teacher's h_t @ P, which is what
the hidden-state loss compares it with. Inside a layer, each head keeps its strongest channels and
the feed-forward block its strongest neurons.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from bistil_ray.config import StudentConfig
from bistil_ray.errors import UserInputError

LAYER_MAP_FILE = "bistil_layer_map.json"


def select_teacher_layers(
    teacher_layers: int, student_layers: int, selection: Literal["regular", "bottom"]
) -> list[int]:
    """The teacher layer each student layer copies.

    regular: student layer j copies teacher layer round((j+1) * L_t / L_s) - 1, i.e. the top layer of
    each of L_s evenly sized blocks (j*k + k-1 when k = L_t / L_s is whole, as in BiStil); bottom: the
    first L_s layers.
    """
    if not 0 < student_layers <= teacher_layers:
        raise UserInputError(
            f"student.layers: must lie in [1, {teacher_layers}] (the teacher's depth), got {student_layers}"
        )
    if selection == "bottom":
        return list(range(student_layers))
    if selection == "regular":
        # Integer round-half-up of (j+1) * L_t / L_s, so spacing does not depend on float rounding.
        return [
            (2 * (j + 1) * teacher_layers + student_layers) // (2 * student_layers) - 1 for j in range(student_layers)
        ]
    raise UserInputError(f"student.layer_selection: expected 'regular' or 'bottom', got {selection!r}")


@dataclass(frozen=True)
class LayerMap:
    """What each student layer corresponds to in the teacher, in the indexing of model outputs."""

    teacher_layers: list[int]  # teacher layer copied by student layer j
    hidden_pairs: list[tuple[int, int]]  # (student, teacher) `hidden_states` index; (0, 0) = embeddings
    attention_pairs: list[tuple[int, int]]  # (student, teacher) `attentions` index

    @classmethod
    def from_teacher_layers(cls, teacher_layers: list[int]) -> "LayerMap":
        return cls(
            teacher_layers=list(teacher_layers),
            hidden_pairs=[(0, 0)] + [(j + 1, t + 1) for j, t in enumerate(teacher_layers)],
            attention_pairs=[(j, t) for j, t in enumerate(teacher_layers)],
        )

    def save(self, directory: Path) -> None:
        (Path(directory) / LAYER_MAP_FILE).write_text(json.dumps(asdict(self)), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "LayerMap":
        path = Path(directory) / LAYER_MAP_FILE
        if not path.is_file():
            raise UserInputError(f"{path}: no such file (not a BiStil student directory)")
        record = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            teacher_layers=record["teacher_layers"],
            hidden_pairs=[tuple(pair) for pair in record["hidden_pairs"]],
            attention_pairs=[tuple(pair) for pair in record["attention_pairs"]],
        )


def build_student(
    teacher: PreTrainedModel, config: StudentConfig, calibration_hidden: torch.Tensor | None = None
) -> tuple[PreTrainedModel, LayerMap, torch.Tensor | None]:
    """A student initialised from `teacher`, its layer map, and the hidden-state projection P (or None).

    `calibration_hidden` (any shape ending in the teacher's hidden size; teacher hidden states of
    sample text, padding removed) replaces the embedding matrix as the basis of P. With
    `initialisation: random` the student has the same shape, layer map and P, but fresh weights
    drawn by its class's own initialiser from torch's global RNG.
    """
    teacher_layers = select_teacher_layers(teacher.config.num_hidden_layers, config.layers, config.layer_selection)
    student = _copy_layers(teacher, teacher_layers)
    projection = None
    if config.width_factor > 1:
        projection = hidden_projection(teacher, config.width_factor, calibration_hidden)
        student = _narrow(student, config.width_factor, projection)
    if config.initialisation == "random":
        student = _fresh_model(student, copy.deepcopy(student.config))
    student.train(teacher.training)
    return student, LayerMap.from_teacher_layers(teacher_layers), projection


def encoder_layers(model: PreTrainedModel) -> tuple[str, nn.ModuleList]:
    """The qualified name and the module list of the encoder's transformer layers."""
    candidates = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) == model.config.num_hidden_layers
    ]
    if len(candidates) != 1:
        names = [name for name, _ in candidates]
        raise UserInputError(f"teacher: cannot find its encoder layer list (candidates: {names})")
    return candidates[0]


def _student_config(teacher: PreTrainedModel, depth: int) -> PretrainedConfig:
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = depth
    # The student learns to match a deterministic teacher; dropout only adds noise to that target.
    for key, value in config.to_dict().items():
        if "dropout" in key and (value is None or isinstance(value, float)):
            setattr(config, key, 0.0)
    return config


def _fresh_model(like: PreTrainedModel, config: PretrainedConfig) -> PreTrainedModel:
    """A newly initialised model of `like`'s class, device and dtype, with a pooler only if `like` has one."""
    # Base encoders (BertModel, XLMRobertaModel) may be built without a pooler (e5 has none).
    without_pooler = {"add_pooling_layer": False} if getattr(like, "pooler", True) is None else {}
    return type(like)(config, **without_pooler).to(device=like.device, dtype=like.dtype)


def _copy_layers(teacher: PreTrainedModel, teacher_layers: list[int]) -> PreTrainedModel:
    student = _fresh_model(teacher, _student_config(teacher, len(teacher_layers)))
    layers_name, _ = encoder_layers(teacher)
    teacher_state = teacher.state_dict()
    student_state = {}
    for key in student.state_dict():
        teacher_key = key
        if key.startswith(f"{layers_name}."):
            j, rest = key.removeprefix(f"{layers_name}.").split(".", 1)
            teacher_key = f"{layers_name}.{teacher_layers[int(j)]}.{rest}"
        student_state[key] = teacher_state[teacher_key]
    student.load_state_dict(student_state, strict=True)
    return student


# --- width reduction -------------------------------------------------------------------------------

# Linears of a BERT-layout layer (BERT, XLM-R, e5) whose outputs are attention-head channels or
# feed-forward neurons rather than the residual stream: they keep channels instead of projecting.
_QUERY, _KEY, _VALUE = "attention.self.query", "attention.self.key", "attention.self.value"
_ATTENTION_OUT, _FFN_IN, _FFN_OUT = "attention.output.dense", "intermediate.dense", "output.dense"


class Kept(NamedTuple):
    """What a linear inside a layer keeps: output rows, input columns, and a rescaling of its output."""

    rows: torch.Tensor | None = None
    columns: torch.Tensor | None = None
    scale: float = 1.0


def hidden_projection(
    teacher: PreTrainedModel, width_factor: int, calibration_hidden: torch.Tensor | None = None
) -> torch.Tensor:
    """P (teacher_hidden x student_hidden): the top right-singular vectors of the embeddings or of
    `calibration_hidden`, so h @ P keeps the directions in which the residual stream varies most."""
    hidden = teacher.config.hidden_size
    _check_width(teacher, width_factor)
    sample = teacher.get_input_embeddings().weight if calibration_hidden is None else calibration_hidden
    if sample.shape[-1] != hidden:
        raise ValueError(f"calibration_hidden: last dimension {sample.shape[-1]} is not the hidden size {hidden}")
    _, _, right = torch.linalg.svd(sample.detach().reshape(-1, hidden).float(), full_matrices=False)
    return right[: hidden // width_factor].T.contiguous().to(device=teacher.device, dtype=teacher.dtype)


def _check_width(teacher: PreTrainedModel, width_factor: int) -> None:
    config = teacher.config
    if config.hidden_size % width_factor or config.intermediate_size % width_factor:
        raise UserInputError(
            f"student.width_factor: {width_factor} must divide hidden_size {config.hidden_size} "
            f"and intermediate_size {config.intermediate_size}"
        )
    if (config.hidden_size // width_factor) % config.num_attention_heads:
        raise UserInputError(
            f"student.width_factor: hidden_size / {width_factor} must be a multiple of "
            f"the {config.num_attention_heads} attention heads"
        )


@torch.no_grad()
def _narrow(wide: PreTrainedModel, width_factor: int, projection: torch.Tensor) -> PreTrainedModel:
    config = copy.deepcopy(wide.config)
    config.hidden_size //= width_factor
    config.intermediate_size //= width_factor
    narrow = type(wide)(config).to(device=wide.device, dtype=wide.dtype)
    kept = _kept_channels(wide, width_factor)
    state = {}
    for name, module in wide.named_modules():
        target = narrow.get_submodule(name)
        for key, value in _narrow_module(module, target, projection, kept.get(name, Kept())).items():
            state[f"{name}.{key}" if name else key] = value
    # Non-persistent buffers (position ids) were narrowed too but are not part of the state dict.
    narrow.load_state_dict({key: state[key] for key in narrow.state_dict()}, strict=True)
    return narrow


def _narrow_module(
    module: nn.Module, target: nn.Module, projection: torch.Tensor, kept: Kept
) -> dict[str, torch.Tensor]:
    """The narrowed direct parameters of one module; which dims shrink is read off `target`."""
    if isinstance(module, nn.Embedding):
        return {"weight": module.weight @ projection}
    if isinstance(module, nn.LayerNorm):
        # LayerNorm scales each coordinate; in the projected basis the closest diagonal scale is
        # diag(P^T diag(gamma) P), a weighted mean of gamma over the directions each column mixes.
        return {"weight": (projection * projection).T @ module.weight, "bias": module.bias @ projection}
    if isinstance(module, nn.Linear):
        return _narrow_linear(module, target, projection, kept)
    state = {}
    for key, value in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
        if value.shape != getattr(target, key).shape:
            raise UserInputError(f"student.width_factor: cannot narrow {type(module).__name__}.{key}")
        state[key] = value
    return state


def _narrow_linear(
    module: nn.Linear, target: nn.Linear, projection: torch.Tensor, kept: Kept
) -> dict[str, torch.Tensor]:
    weight, bias = module.weight * kept.scale, None if module.bias is None else module.bias * kept.scale
    if kept.rows is not None:
        weight, bias = weight[kept.rows], None if bias is None else bias[kept.rows]
    elif target.out_features != module.out_features:  # writes the residual stream
        weight, bias = projection.T @ weight, None if bias is None else bias @ projection
    if kept.columns is not None:
        weight = weight[:, kept.columns]
    elif target.in_features != module.in_features:  # reads the residual stream
        weight = weight @ projection
    return {"weight": weight} if bias is None else {"weight": weight, "bias": bias}


def _kept_channels(wide: PreTrainedModel, width_factor: int) -> dict[str, Kept]:
    """What each linear inside each layer keeps, by qualified module name."""
    layers_name, layers = encoder_layers(wide)
    heads = wide.config.num_attention_heads
    kept = {}
    for index, layer in enumerate(layers):
        prefix = f"{layers_name}.{index}."
        try:
            query, key, value, attention_out, ffn_in, ffn_out = (
                layer.get_submodule(name) for name in (_QUERY, _KEY, _VALUE, _ATTENTION_OUT, _FFN_IN, _FFN_OUT)
            )
        except AttributeError:
            raise UserInputError(
                f"student.width_factor: width reduction supports BERT-layout layers, not {type(layer).__name__}"
            ) from None
        # A channel matters as much as the product of the weights that produce and consume it.
        attention_channels = _top_per_head(query.weight.norm(dim=1) * key.weight.norm(dim=1), heads, width_factor)
        value_channels = _top_per_head(value.weight.norm(dim=1) * attention_out.weight.norm(dim=0), heads, width_factor)
        neuron_scores = ffn_in.weight.norm(dim=1) * ffn_out.weight.norm(dim=0)
        neurons = neuron_scores.topk(len(neuron_scores) // width_factor).indices.sort().values
        kept |= {
            # Fewer channels per head: the student divides attention logits by sqrt(head_dim / factor)
            # where the teacher divided by sqrt(head_dim); scaling the queries keeps the logits' scale.
            prefix + _QUERY: Kept(rows=attention_channels, scale=width_factor**-0.5),
            prefix + _KEY: Kept(rows=attention_channels),
            prefix + _VALUE: Kept(rows=value_channels),
            prefix + _ATTENTION_OUT: Kept(columns=value_channels),
            prefix + _FFN_IN: Kept(rows=neurons),
            prefix + _FFN_OUT: Kept(columns=neurons),
        }
    return kept


def _top_per_head(scores: torch.Tensor, heads: int, width_factor: int) -> torch.Tensor:
    """Indices (ascending) of the strongest 1/width_factor of each head's channels."""
    per_head = scores.view(heads, -1)
    head_dim = per_head.shape[1]
    top = per_head.topk(head_dim // width_factor, dim=1).indices.sort(dim=1).values
    return (top + head_dim * torch.arange(heads, device=scores.device)[:, None]).flatten()
