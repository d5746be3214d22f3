"""Phase 2: task distillation with Lottery-Ticket Sparse Fine-Tuning (LT-SFT).

The phase-1 student, with a task head, learns from the task teacher on source-language task data:
  1. "full" stage: all parameters train for `full_steps`;
  2. the `density` fraction of body entries that moved most (|theta - theta_0|, one global top-k)
     is the lottery ticket; the body is reset to theta_0;
  3. "sparse" stage: `sparse_steps` more, only the ticket's entries move (the head stays dense).
The best sparse-stage weights by source-validation accuracy are kept. Where the task has a target
validation set, each evaluation also scores it (`target_validation_accuracy`): a sweep may search or
stop trials on it, while the weights kept stay chosen on the source language, as published.

With `target_text_ratio` > 0, that share of steps distils the task teacher's outputs on unlabelled
target-language text (no labels, so no gold-label term): the student then learns the teacher's
zero-shot behaviour on the target language directly, not only through cross-lingual alignment.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Sequence

import torch
from transformers import PreTrainedModel

from bistil_ray.config import Phase2Config
from bistil_ray.method.batching import BucketedBatches, Example, fixed_batches
from bistil_ray.method.evaluation import classification_scores
from bistil_ray.method.hooks import TrainHooks
from bistil_ray.method.losses import LossWeights
from bistil_ray.method.phase1 import distill_step_loss
from bistil_ray.method.sparse_finetuning import (
    SparseUpdate,
    reset_to_initial,
    select_lottery_ticket,
    snapshot,
    sparsifiable_parameters,
)
from bistil_ray.method.student import LayerMap
from bistil_ray.method.training import (
    ThroughputMeter,
    autocast,
    compute_dtype,
    inference_flops_per_token,
    load_tensors,
    load_training_state,
    make_optimizer,
    make_schedule,
    predict_batches,
    rank_and_world,
    report_evaluation,
    save_training_state,
    to_device,
    training_device,
    training_flops_per_token,
    unwrap,
    wrap_for_data_parallel,
)


def phase2_weights(config: Phase2Config) -> LossWeights:
    return LossWeights(
        hidden=config.alpha_hidden,
        attn=config.alpha_attn,
        ce=config.alpha_ce,
        task=config.alpha_task,
        temperature=config.temperature,
    )


def uses_target_text(step: int, ratio: float) -> bool:
    """Spread target-text steps evenly: step s is one when floor((s+1)r) > floor(sr)."""
    return math.floor((step + 1) * ratio) > math.floor(step * ratio)


def train_phase2(
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    layer_map: LayerMap,
    projection: torch.Tensor | None,
    train: Sequence[Example],
    validation: Sequence[Example],
    config: Phase2Config,
    hooks: TrainHooks,
    pad_token_id: int,
    target_text: Sequence[Example] = (),
    target_validation: Sequence[Example] = (),
    log: Any = print,
) -> dict[str, float]:
    """LT-SFT of `student` (a *ForSequenceClassification holding theta_0) in place.
    `target_text`: unlabelled target-language examples, used when `target_text_ratio` > 0;
    `target_validation`: labelled target-language examples, scored at every evaluation when given."""
    device = training_device()
    dtype = compute_dtype(device, config.precision)
    rank, world = rank_and_world()
    torch.manual_seed(config.seed)
    weights = phase2_weights(config)
    teacher.to(device).eval()
    body = sparsifiable_parameters(student, freeze_layer_norm=config.freeze_layer_norm)
    network = wrap_for_data_parallel(student, device)
    network.train()
    theta_0 = snapshot(body)
    batches = BucketedBatches(train, config.batch_size, pad_token_id, seed=config.seed, rank=rank, world_size=world)
    target_ratio = config.target_text_ratio if target_text else 0.0
    if target_ratio > 0:
        target_batches = BucketedBatches(target_text, config.batch_size, pad_token_id, seed=config.seed, rank=rank, world_size=world)
        unlabelled_weights = replace(weights, task=0.0)
    validation_batches = fixed_batches(validation, 64, pad_token_id)
    target_validation_batches = fixed_batches(target_validation, 64, pad_token_id) if target_validation else None
    total_steps = config.full_steps + config.sparse_steps

    def new_stage_optimizer(steps: int):
        optimizer = make_optimizer(student.named_parameters(), config)
        return optimizer, make_schedule(optimizer, steps, config.warmup_ratio)

    optimizer, scheduler = new_stage_optimizer(config.full_steps)
    sparse: SparseUpdate | None = None
    start_step, best_accuracy, best_weights = 0, -1.0, None

    def begin_sparse_stage(masks: dict[str, torch.Tensor]):
        nonlocal optimizer, scheduler, sparse
        reset_to_initial(body, theta_0)
        sparse = SparseUpdate(body, masks, theta_0)
        optimizer, scheduler = new_stage_optimizer(config.sparse_steps)

    if hooks.resume_from is not None:
        if (hooks.resume_from / "masks.safetensors").exists():
            begin_sparse_stage(load_tensors(hooks.resume_from, "masks"))
        state = load_training_state(hooks.resume_from, optimizer, scheduler)
        student.load_state_dict(load_tensors(hooks.resume_from, "student"))
        if (hooks.resume_from / "best.safetensors").exists():
            best_weights = load_tensors(hooks.resume_from, "best")
        start_step, best_accuracy = state["step"], state["best_accuracy"]
        log(f"phase 2: resumed at step {start_step}")

    meter = ThroughputMeter(device, dtype)
    metrics: dict[str, Any] = {}
    for step in range(start_step, total_steps):
        if step == config.full_steps:
            masks = select_lottery_ticket(body, theta_0, config.density)
            begin_sparse_stage(masks)
            log(f"phase 2: lottery ticket of {sparse.kept_count():,} entries (density {config.density}); sparse stage")

        if uses_target_text(step, target_ratio):
            batch, step_weights = to_device(target_batches.batch(step), device), unlabelled_weights
        else:
            batch, step_weights = to_device(batches.batch(step), device), weights
        with autocast(device, dtype):
            loss, parts = distill_step_loss(network, teacher, batch, step_weights, layer_map, projection)
        loss.backward()
        if sparse is not None:
            sparse.mask_gradients()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if sparse is not None:
            sparse.restore_frozen_entries()

        tokens = int(batch["attention_mask"].sum())
        width = batch["input_ids"].shape[1]
        meter.add(tokens, tokens * (training_flops_per_token(student, width) + inference_flops_per_token(teacher, width)))

        stage_end = step + 1 in (config.full_steps, total_steps)
        if (step + 1) % config.eval_every == 0 or stage_end:
            predictions, labels = predict_batches(network, validation_batches, device, dtype)
            scores = classification_scores(predictions, labels, student.config.num_labels)
            target_scores = {}
            if target_validation_batches is not None:
                predictions, labels = predict_batches(network, target_validation_batches, device, dtype)
                accuracy = classification_scores(predictions, labels, student.config.num_labels)["accuracy"]
                target_scores = {"target_validation_accuracy": accuracy}
            if sparse is not None and scores["accuracy"] > best_accuracy:
                best_accuracy = scores["accuracy"]
                best_weights = {key: value.detach().cpu().clone() for key, value in student.state_dict().items()}
            metrics = {
                "phase": "phase2",
                "stage": "sparse" if sparse is not None else "full",
                "step": step + 1,
                "loss": loss.item(),
                **parts,
                "source_accuracy": scores["accuracy"],
                "source_macro_f1": scores["macro_f1"],
                "best_source_accuracy": best_accuracy,
                **target_scores,
                **meter.read(),
            }
            log(
                f"phase 2 ({metrics['stage']}) step {step + 1}/{total_steps}: loss {loss.item():.4f} "
                f"source acc {scores['accuracy']:.3f} {metrics['tokens_per_s']:.0f} tok/s"
            )
            state = {"step": step + 1, "best_accuracy": best_accuracy}
            groups = {"student": unwrap(network).state_dict()}
            if sparse is not None:
                groups["masks"] = sparse.state_dict()
                groups["best"] = best_weights
            report_evaluation(
                hooks,
                metrics,
                lambda directory: save_training_state(directory, groups, optimizer, scheduler, state),
            )

    if best_weights is not None:
        student.load_state_dict(best_weights)
    return metrics
