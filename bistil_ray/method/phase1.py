"""Phase 1: general bilingual distillation of the teacher into a shallower student.

Unlabelled text of the source and target language; each step the student matches the teacher's
hidden states (embedding output included) and attention maps on the layers its `LayerMap` pairs.
Read `train_phase1` top to bottom: it is the whole procedure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn
from transformers import DataCollatorForLanguageModeling, PreTrainedModel, PreTrainedTokenizerBase

from bistil_ray.config import Phase1Config
from bistil_ray.method.batching import BucketedBatches, Example, fixed_batches
from bistil_ray.method.hooks import TrainHooks
from bistil_ray.method.losses import LossWeights, distillation_loss, forward_kwargs
from bistil_ray.method.parser import BiaffineParser
from bistil_ray.method.student import LayerMap
from bistil_ray.method.training import (
    Evaluation,
    StepResult,
    ThroughputMeter,
    TrainingLoop,
    autocast,
    compute_dtype,
    inference_flops_per_token,
    rank_and_world,
    to_device,
    training_device,
    training_flops_per_token,
    wrap_for_data_parallel,
)


@dataclass
class BilingualText:
    """Tokenised unlabelled text (trimmed vocabulary ids) of both languages."""

    source: Sequence[Example]
    target: Sequence[Example]
    validation: Sequence[Example]


def phase1_weights(config: Phase1Config) -> LossWeights:
    return LossWeights(hidden=config.alpha_hidden, attn=config.alpha_attn, ce=0.0, mlm=config.alpha_mlm)


def bilingual_stream(text: BilingualText, config: Phase1Config, pad_token_id: int):
    """step -> batch. "alternate": even steps source, odd steps target; "mixed": one shuffled pool."""
    rank, world = rank_and_world()

    def stream(examples: Sequence[Example], seed: int) -> BucketedBatches:
        return BucketedBatches(examples, config.batch_size, pad_token_id, seed=seed, rank=rank, world_size=world)

    if config.batching == "mixed":
        pool = stream(list(text.source) + list(text.target), config.seed)
        return pool.batch
    source, target = stream(text.source, config.seed), stream(text.target, config.seed + 1)
    return lambda step: (source if step % 2 == 0 else target).batch(step // 2)


def distill_step_loss(
    student: nn.Module,
    teacher: PreTrainedModel,
    batch: dict[str, torch.Tensor],
    weights: LossWeights,
    layer_map: LayerMap,
    projection: torch.Tensor | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One batch through teacher (only if a term needs it) and student, and the weighted loss.

    Shared by both phases: phase 1's batches carry `mlm_labels` when the MLM term is on (both
    models then see the masked input); phase 2's carry `labels` for the gold-label term."""
    inputs = {key: value for key, value in batch.items() if key not in ("labels", "mlm_labels", "start_positions", "end_positions")}
    teacher_out = None
    if weights.needs_hidden or weights.needs_attentions or weights.needs_teacher_logits:
        with torch.no_grad():
            teacher_out = teacher(**inputs, **forward_kwargs(weights))
    parser = isinstance(teacher, BiaffineParser)
    if parser and teacher_out is not None:
        inputs = {**inputs, "heads": teacher_out.label_heads}  # the student's relations, scored at the teacher's heads
    student_out = student(**inputs, **forward_kwargs(weights))
    student_logits, teacher_logits, labels = getattr(student_out, "logits", None), getattr(teacher_out, "logits", None), batch.get("labels")
    if getattr(student_out, "start_logits", None) is not None:  # qa: two distributions over positions per window
        student_logits = span_logits(student_out, batch["attention_mask"])
        teacher_logits = span_logits(teacher_out, batch["attention_mask"]) if teacher_out is not None else None
        labels = torch.stack([batch["start_positions"], batch["end_positions"]], dim=1).flatten() if "start_positions" in batch else None
    return distillation_loss(
        weights,
        attention_mask=batch["attention_mask"],
        student_hidden=student_out.hidden_states,
        teacher_hidden=teacher_out.hidden_states if teacher_out is not None else None,
        hidden_pairs=layer_map.hidden_pairs,
        student_attn=student_out.attentions,
        teacher_attn=teacher_out.attentions if teacher_out is not None else None,
        attention_pairs=layer_map.attention_pairs,
        projection=projection,
        student_logits=student_logits if weights.mlm == 0 else None,
        teacher_logits=teacher_logits,
        labels=labels,
        mlm_logits=student_logits if weights.mlm > 0 else None,
        mlm_labels=batch.get("mlm_labels"),
        student_arc_logits=student_out.arc_logits if parser else None,
        teacher_arc_logits=teacher_out.arc_logits if parser and teacher_out is not None else None,
        heads=batch.get("heads"),
        word_mask=student_out.word_mask if parser else None,
    )


def span_logits(out, attention_mask: torch.Tensor) -> torch.Tensor:
    """(2 x batch, positions): a qa model's start and end scores as rows of logits over the window's
    positions, padding masked out, for the soft and the hard cross-entropy alike."""
    logits = torch.stack([out.start_logits, out.end_logits], dim=1).float()
    return logits.masked_fill(~attention_mask.bool()[:, None, :], torch.finfo(logits.dtype).min).flatten(0, 1)


def masked_lm_masker(tokenizer: PreTrainedTokenizerBase, probability: float = 0.15):
    """batch -> batch with BERT-style masked input_ids and `mlm_labels` (transformers' recipe:
    15% of non-special tokens, 80% [MASK], 10% random, 10% unchanged)."""
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=probability)

    def mask(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        special = torch.isin(batch["input_ids"], torch.tensor(tokenizer.all_special_ids)) | (batch["attention_mask"] == 0)
        input_ids, labels = collator.torch_mask_tokens(batch["input_ids"].clone(), special_tokens_mask=special)
        return {**batch, "input_ids": input_ids, "mlm_labels": labels}

    return mask


@torch.no_grad()
def validation_loss(student, teacher, batches, weights, layer_map, projection, device, dtype) -> float:
    student.eval()
    total, tokens = 0.0, 0
    for batch in batches:
        batch = to_device(batch, device)
        with autocast(device, dtype):
            loss, _ = distill_step_loss(student, teacher, batch, weights, layer_map, projection)
        count = int(batch["attention_mask"].sum())
        total, tokens = total + loss.item() * count, tokens + count
    student.train()
    return total / max(tokens, 1)


def train_phase1(
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    layer_map: LayerMap,
    projection: torch.Tensor | None,
    text: BilingualText,
    config: Phase1Config,
    hooks: TrainHooks,
    tokenizer: PreTrainedTokenizerBase,
    log: Any = print,
) -> dict[str, float]:
    """Distil `teacher` into `student` in place; on return `student` holds the best weights
    by validation loss. Returns the final metrics. With `alpha_mlm` > 0 the student is a
    *ForMaskedLM model and also learns masked-token prediction on the same text."""
    device = training_device()
    dtype = compute_dtype(device, config.precision)
    torch.manual_seed(config.seed)
    weights = phase1_weights(config)
    teacher.to(device).eval()
    model = wrap_for_data_parallel(student, device)
    model.train()
    pad_token_id = tokenizer.pad_token_id
    next_batch = bilingual_stream(text, config, pad_token_id)
    validation = fixed_batches(text.validation, config.batch_size, pad_token_id)
    prepare = masked_lm_masker(tokenizer) if weights.mlm > 0 else (lambda batch: batch)
    if weights.mlm > 0:  # fixed masks, so validation losses are comparable across evaluations
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            validation = [prepare(batch) for batch in validation]

    def train_step(step: int) -> StepResult:
        batch = to_device(prepare(next_batch(step)), device)
        with autocast(device, dtype):
            loss, parts = distill_step_loss(model, teacher, batch, weights, layer_map, projection)
        tokens = int(batch["attention_mask"].sum())
        width = batch["input_ids"].shape[1]
        teacher_flops = inference_flops_per_token(teacher, width) if weights.needs_hidden or weights.needs_attentions else 0
        return StepResult(loss, parts, tokens, tokens * (training_flops_per_token(student, width) + teacher_flops))

    def evaluate(step: int) -> Evaluation:
        val_loss = validation_loss(model, teacher, validation, weights, layer_map, projection, device, dtype)
        return Evaluation(val_loss, {"val_loss": val_loss, "lr": loop.scheduler.get_last_lr()[0]}, f"val {val_loss:.4f}")

    loop = TrainingLoop(
        name="phase 1", phase="phase1", model=student, network=model, config=config, total_steps=config.steps,
        hooks=hooks, meter=ThroughputMeter(device, dtype), best_metric="best_val_loss", minimise=True, log=log,
    )  # fmt: skip
    return loop.run(train_step, evaluate)
