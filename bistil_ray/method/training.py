"""What every training procedure here shares: device and data-parallel set-up, optimiser and
schedule, checkpoint state, throughput and model-FLOPs-utilisation accounting, and `TrainingLoop`,
the one loop (resume, update, evaluation cadence, best weights, checkpoint, report, LT-SFT's two
stages) that the task teacher, phase 1 and phase 2 run with their own step and evaluation.

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
from bistil_ray.method.losses import IGNORE_INDEX
from bistil_ray.method.parser import predicted_parses
from bistil_ray.method.sparse_finetuning import SparseUpdate, reset_to_initial, select_lottery_ticket, snapshot


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
    return bool(cpu_bf16_features())


def cpu_bf16_features() -> list[str]:
    """This CPU's bf16 matrix instructions that oneDNN dispatches on (AMX, AVX512-BF16)."""
    # torch has no public check for these CPU features; its private ones may be renamed in a later
    # release, in which case none is reported and float32 is the safe answer.
    checks = {"AMX": "_is_amx_tile_supported", "AVX512-BF16": "_is_avx512_bf16_supported"}
    return [name for name, check in checks.items() if getattr(torch.cpu, check, lambda: False)()]


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
    # Fused on CPU too: one kernel over all parameters instead of PyTorch's default per-tensor loop
    # (bench/results/loop_vs_bare.md measures the two).
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

    Measured rather than looked up, so utilisation is honest on any CPU; cached per process. Its
    operands come from a generator of its own: drawn from the global one, the first loop of a
    process would train on other dropout masks than every later loop with the same seed.
    """
    device = torch.device(device_type)
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
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
    """Non-padding tokens per second and MFU over the training steps since the last `restart()`:
    the loop reads it before an evaluation and restarts it after, so evaluation time is not counted
    as training time (it is reported on its own, as `eval_seconds`)."""

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
        return {
            "tokens_per_s": self.tokens * world / elapsed,
            "flops_per_s": self.flops * world / elapsed,
            "mfu": self.flops * world / elapsed / peak,
        }

    def restart(self) -> None:
        self.tokens, self.flops, self.started = 0, 0.0, time.perf_counter()


@torch.no_grad()
def predict_batches(
    model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], device: torch.device, dtype: torch.dtype
):
    """(predicted label ids, gold label ids) over labelled batches: numpy arrays, or for token
    batches (labels per position) one array per sentence of its labelled positions."""
    was_training = model.training
    model.eval()
    predictions, labels = [], []
    for batch in batches:
        batch = to_device(batch, device)
        inputs = {key: value for key, value in batch.items() if key not in ("labels", "heads", "start_positions", "end_positions")}
        with autocast(device, dtype):
            out = model(**inputs)
        if "start_positions" in batch:  # a window of a qa task: (start, end), scored as a whole
            predictions.append(torch.stack([out.start_logits.argmax(-1), out.end_logits.argmax(-1)], dim=1).cpu())
            labels.append(torch.stack([batch["start_positions"], batch["end_positions"]], dim=1).cpu())
            continue
        if "heads" in batch:  # a parser: (head, relation) per word, as evaluation.parse_scores reads them
            predictions.extend(predicted_parses(out))
            gold = torch.stack([batch["heads"], batch["labels"]], dim=-1).cpu()
            labels.extend(tree[starts > 0].numpy() for tree, starts in zip(gold, batch["word_starts"].cpu()))
            continue
        logits = out.logits
        guesses, gold = logits.argmax(-1).cpu(), batch["labels"].cpu()
        if gold.dim() == 2:
            labelled = gold != IGNORE_INDEX
            predictions.extend(row[mask].numpy() for row, mask in zip(guesses, labelled))
            labels.extend(row[mask].numpy() for row, mask in zip(gold, labelled))
        else:
            predictions.append(guesses)
            labels.append(gold)
    model.train(was_training)
    if predictions and isinstance(predictions[0], torch.Tensor):
        return torch.cat(predictions).numpy(), torch.cat(labels).numpy()
    return predictions, labels


# --- the loop every procedure runs -------------------------------------------------------------------


@dataclass
class StepResult:
    """What one procedure's training step computed; the loop does the backward pass and the update."""

    loss: torch.Tensor
    parts: dict[str, float]  # the loss's terms, for the metrics
    tokens: int  # non-padding tokens of the batch
    flops: float  # model FLOPs of the step (forward and backward, teacher included)


@dataclass
class Evaluation:
    score: float  # it chooses the best weights (higher is better unless the loop minimises)
    metrics: dict[str, Any]
    summary: str  # for the log line


@dataclass
class LotteryTicketStages:
    """LT-SFT's two stages: dense steps, then, from the entries of `body` that moved most, a sparse
    stage restarted from the initial weights (`method/sparse_finetuning`)."""

    body: dict[str, torch.Tensor]
    dense_steps: int
    density: float


# Between evaluations, a progress line at least this often: a log that is not a terminal (a
# cluster job's, nohup, CI) shows that a long phase is alive and how far it has come.
PROGRESS_EVERY_S = 60.0


@dataclass(kw_only=True)
class TrainingLoop:
    """Resume, the steps, the optimiser and its schedule, the evaluation cadence, the best weights,
    the checkpoint and the report: the skeleton the task teacher, phase 1 and phase 2 share, each
    with its own step and evaluation.

    `model` is what is checkpointed and ends with the best weights; `network` the (data-parallel)
    module that trains it. With `stages`, the best weights come from the sparse stage only."""

    name: str
    phase: str  # the metrics' "phase"
    model: nn.Module
    network: nn.Module
    config: OptimConfig  # learning rate, weight decay, warm-up, eval_every
    total_steps: int
    hooks: TrainHooks
    meter: ThroughputMeter
    best_metric: str  # the metrics' name for the best score so far
    minimise: bool = False  # the score is a loss
    stages: LotteryTicketStages | None = None
    log: Callable[[str], None] = print

    def __post_init__(self) -> None:
        self.sparse = None
        self.theta_0 = snapshot(self.stages.body) if self.stages else {}
        self.optimizer, self.scheduler = self.new_optimizer(self.stages.dense_steps if self.stages else self.total_steps)

    def new_optimizer(self, steps: int) -> tuple[torch.optim.Optimizer, Any]:
        """AdamW over the model's trainable parameters, with its schedule over `steps`."""
        optimizer = make_optimizer(self.model.named_parameters(), self.config)
        return optimizer, make_schedule(optimizer, steps, self.config.warmup_ratio)

    @property
    def stage(self) -> str:
        return "sparse" if self.sparse is not None else "full"

    def begin_sparse_stage(self, masks: dict[str, torch.Tensor]) -> None:
        reset_to_initial(self.stages.body, self.theta_0)
        self.sparse = SparseUpdate(self.stages.body, masks, self.theta_0)
        self.optimizer, self.scheduler = self.new_optimizer(self.total_steps - self.stages.dense_steps)

    def run(self, train_step: Callable[[int], StepResult], evaluate: Callable[[int], Evaluation]) -> dict[str, Any]:
        start_step, best_score, best_weights = 0, math.inf if self.minimise else -math.inf, None
        if self.hooks.resume_from is not None:
            resume = self.hooks.resume_from
            if (resume / "masks.safetensors").exists():
                self.begin_sparse_stage(load_tensors(resume, "masks"))
            state = load_training_state(resume, self.optimizer, self.scheduler)
            self.model.load_state_dict(load_tensors(resume, "model"))
            if (resume / "best.safetensors").exists():
                best_weights = load_tensors(resume, "best")
            start_step, best_score = state["step"], state["best_score"]
            self.log(f"{self.name}: resumed at step {start_step}")

        stage_ends = {self.total_steps} | ({self.stages.dense_steps} if self.stages else set())
        metrics: dict[str, Any] = {}
        run_started = last_line = time.perf_counter()
        self.meter.restart()

        def where(step: int) -> str:
            elapsed = time.perf_counter() - run_started
            left = elapsed / (step + 1 - start_step) * (self.total_steps - step - 1)
            return f"{elapsed:.0f} s elapsed, about {left:.0f} s left"

        for step in range(start_step, self.total_steps):
            if self.stages and step == self.stages.dense_steps:
                self.begin_sparse_stage(select_lottery_ticket(self.stages.body, self.theta_0, self.stages.density))
                self.log(f"{self.name}: lottery ticket of {self.sparse.kept_count():,} entries (density {self.stages.density}); sparse stage")
            result = train_step(step)
            result.loss.backward()
            if self.sparse is not None:
                self.sparse.mask_gradients()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 1.0)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.sparse is not None:
                self.sparse.restore_frozen_entries()
            self.meter.add(result.tokens, result.flops)

            if (step + 1) % self.config.eval_every != 0 and step + 1 not in stage_ends:
                if time.perf_counter() - last_line >= PROGRESS_EVERY_S:
                    self.log(
                        f"{self.name}{f' ({self.stage})' if self.stages else ''} step {step + 1}/{self.total_steps}: "
                        f"loss {result.loss.item():.4f} ({where(step)})"
                    )
                    last_line = time.perf_counter()
                continue
            throughput = self.meter.read()
            evaluation_started = time.perf_counter()
            evaluation = evaluate(step)
            choosing = self.stages is None or self.sparse is not None
            better = evaluation.score < best_score if self.minimise else evaluation.score > best_score
            if choosing and better:
                best_score = evaluation.score
                best_weights = {key: value.detach().cpu().clone() for key, value in self.model.state_dict().items()}
            metrics = {
                "phase": self.phase,
                **({"stage": self.stage} if self.stages else {}),
                "step": step + 1,
                "loss": result.loss.item(),
                **result.parts,
                **evaluation.metrics,
                self.best_metric: best_score,
                **throughput,
                "eval_seconds": time.perf_counter() - evaluation_started,
            }
            self.log(
                f"{self.name}{f' ({self.stage})' if self.stages else ''} step {step + 1}/{self.total_steps}: "
                f"loss {result.loss.item():.4f} {evaluation.summary} {metrics['tokens_per_s']:.0f} tok/s MFU {metrics['mfu']:.1%} "
                f"(evaluation {metrics['eval_seconds']:.0f} s; {where(step)})"
            )
            last_line = time.perf_counter()
            self.checkpoint_and_report(metrics, {"step": step + 1, "best_score": best_score}, best_weights)
            self.meter.restart()

        if best_weights is not None:
            self.model.load_state_dict(best_weights)
        return metrics

    def checkpoint_and_report(self, metrics: dict[str, Any], state: dict[str, Any], best_weights) -> None:
        groups = {"model": unwrap(self.network).state_dict()}
        if best_weights is not None:
            groups["best"] = best_weights
        if self.sparse is not None:
            groups["masks"] = self.sparse.state_dict()
        optimizer, scheduler = self.optimizer, self.scheduler
        report_evaluation(self.hooks, metrics, lambda directory: save_training_state(directory, groups, optimizer, scheduler, state))
