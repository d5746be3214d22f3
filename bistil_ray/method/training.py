"""What every training loop here shares: device and data-parallel set-up, optimiser and schedule,
checkpoint state, throughput and model-FLOPs-utilisation accounting.

Data parallelism is plain `torch.distributed`: when a process group exists (Ray Train's
TorchTrainer, or torchrun, creates it) models are wrapped in DDP and batches are sharded by rank.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import get_linear_schedule_with_warmup

from bistil_ray.config import OptimConfig, Precision
from bistil_ray.method.hooks import TrainHooks


# --- processes and devices -------------------------------------------------------------------------


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return rank_and_world()[0] == 0


def training_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def has_native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 matrices in hardware: Ampere-or-later GPUs; CPUs with AVX512-BF16
    or AMX, where oneDNN's bf16 matmuls run 2-3x faster than float32 (bench/results/loop_vs_bare.md).
    On other CPUs bf16 is emulated and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    # torch has no public check for these CPU features; its private ones (what oneDNN dispatches on)
    # may be renamed in a later release, in which case float32 is the safe answer.
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def compute_dtype(device: torch.device, precision: Precision) -> torch.dtype:
    """The dtype a loop's matrix products run in: `auto` picks bf16 where the hardware has it."""
    if precision == "bf16" or (precision == "auto" and has_native_bf16(device)):
        return torch.bfloat16
    return torch.float32


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed precision: bf16 matrix products, float32 weights, optimiser state and losses."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def wrap_for_data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    model.to(device)
    if rank_and_world()[1] == 1:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce_mean(value: float, device: torch.device) -> float:
    if rank_and_world()[1] == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.item() / rank_and_world()[1]


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


# --- optimisation ----------------------------------------------------------------------------------


def _no_weight_decay(name: str) -> bool:
    # Embedding rows of tokens absent from the training text get no gradient; decay alone would
    # shrink them, pulling the target language's tokens away from where phase 1 aligned them.
    return name.endswith("bias") or "norm" in name.lower() or "embeddings" in name


def make_optimizer(named_parameters: Iterable[tuple[str, nn.Parameter]], config: OptimConfig) -> torch.optim.AdamW:
    """AdamW with decoupled weight decay on the layers' weight matrices only (not biases,
    normalisation or embeddings)."""
    decay, no_decay = [], []
    for name, parameter in named_parameters:
        if parameter.requires_grad:
            (no_decay if _no_weight_decay(name) else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # Fused on CPU too: one kernel over all parameters, about 3x faster than PyTorch's default
    # per-tensor loop on a 2-core CPU (bench/results/loop_vs_bare.md: 9.7 against 29.0 ms per step).
    return torch.optim.AdamW(groups, lr=config.lr, fused=True)


def make_schedule(optimizer: torch.optim.Optimizer, steps: int, warmup_ratio: float):
    return get_linear_schedule_with_warmup(optimizer, math.ceil(warmup_ratio * steps), steps)


# --- checkpoint state --------------------------------------------------------------------------------


def save_training_state(
    directory: Path,
    tensors: dict[str, dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler,
    state: dict[str, Any],
) -> None:
    """Everything needed to resume bit-exactly: named tensor groups (safetensors), optimiser and
    schedule state (torch.save of tensors and numbers only, read back with weights_only=True),
    RNG state and the loop's own counters (JSON)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, group in tensors.items():
        save_file({key: value.detach().cpu().clone() for key, value in group.items()}, directory / f"{name}.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, directory / "optimizer.pt")
    save_file({"torch": torch.get_rng_state()}, directory / "rng.safetensors")
    (directory / "state.json").write_text(json.dumps(state, indent=1))


def load_training_state(directory: Path, optimizer: torch.optim.Optimizer, scheduler) -> dict[str, Any]:
    saved = torch.load(directory / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(load_file(directory / "rng.safetensors")["torch"])
    return json.loads((directory / "state.json").read_text())


def load_tensors(directory: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(directory / f"{name}.safetensors")


def report_evaluation(hooks: TrainHooks, metrics: dict[str, Any], save: Callable[[Path], None]) -> None:
    """Hand metrics (every rank) and a fresh checkpoint (rank 0, if wanted) to the runner."""
    checkpoint = None
    if hooks.wants_checkpoints and is_main_process():
        checkpoint = Path(tempfile.mkdtemp(prefix="bistil-checkpoint-"))
        save(checkpoint)
    try:
        hooks.on_evaluation(metrics, checkpoint)
    finally:
        if checkpoint is not None:
            shutil.rmtree(checkpoint, ignore_errors=True)


# --- throughput and model FLOPs utilisation ----------------------------------------------------------


def non_embedding_parameters(model: nn.Module) -> int:
    model = unwrap(model)
    embedding = sum(p.numel() for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters())
    return sum(p.numel() for p in model.parameters()) - embedding


def encoder_shape(model: nn.Module) -> tuple[int, int]:
    config = unwrap(model).config
    return config.num_hidden_layers, config.hidden_size


def training_flops_per_token(model: nn.Module, sequence_length: int) -> float:
    """Forward + backward, as in nanoGPT / PaLM: 6N plus the attention score and value products."""
    layers, hidden = encoder_shape(model)
    return 6 * non_embedding_parameters(model) + 12 * layers * hidden * sequence_length


def inference_flops_per_token(model: nn.Module, sequence_length: int) -> float:
    layers, hidden = encoder_shape(model)
    return 2 * non_embedding_parameters(model) + 4 * layers * hidden * sequence_length


@lru_cache(maxsize=None)
def peak_matmul_flops(
    device_type: str = "cpu", dtype: torch.dtype = torch.float32, size: int = 1024, repeats: int = 5
) -> float:
    """This machine's achieved matmul FLOP/s in `dtype`, the one the loop computes in: the MFU denominator.

    Measured rather than looked up, so utilisation is honest on any CPU; cached per process.
    """
    device = torch.device(device_type)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


@dataclass
class ThroughputMeter:
    """Non-padding tokens per second and MFU over the steps since the last `read()`."""

    device: torch.device
    dtype: torch.dtype
    tokens: int = 0
    flops: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def add(self, tokens: int, flops: float) -> None:
        self.tokens += tokens
        self.flops += flops

    def read(self) -> dict[str, float]:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        world = rank_and_world()[1]
        peak = peak_matmul_flops(self.device.type, self.dtype) * world
        reading = {
            "tokens_per_s": self.tokens * world / elapsed,
            "flops_per_s": self.flops * world / elapsed,
            "mfu": self.flops * world / elapsed / peak,
        }
        self.tokens, self.flops, self.started = 0, 0.0, time.perf_counter()
        return reading


@torch.no_grad()
def predict_batches(
    model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], device: torch.device, dtype: torch.dtype
):
    """(predicted label ids, gold label ids) over labelled batches, as numpy arrays."""
    was_training = model.training
    model.eval()
    predictions, labels = [], []
    for batch in batches:
        batch = to_device(batch, device)
        inputs = {key: value for key, value in batch.items() if key != "labels"}
        with autocast(device, dtype):
            logits = model(**inputs).logits
        predictions.append(logits.argmax(-1).cpu())
        labels.append(batch["labels"].cpu())
    model.train(was_training)
    return torch.cat(predictions).numpy(), torch.cat(labels).numpy()
