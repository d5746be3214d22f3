"""Phase 2: task distillation with Lottery-Ticket Sparse Fine-Tuning (LT-SFT).

The phase-1 student, with a task head, learns from the task teacher on source-language task data:
  1. "full" stage: all parameters train for `full_steps`;
  2. the `density` fraction of body entries that moved most (|theta - theta_0|, one global top-k)
     is the lottery ticket; the body is reset to theta_0;
  3. "sparse" stage: `sparse_steps` more, only the ticket's entries move (the head stays dense).
The best sparse-stage weights by source-validation score are kept (the task's metric: accuracy, entity F1
or token accuracy). Where the task has a target
validation set, each evaluation also scores it (`target_validation_score`): a sweep may search or
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
from bistil_ray.method.batching import BucketedBatches, Example, fixed_batches, validation_sample
from bistil_ray.method.evaluation import task_scores
from bistil_ray.method.hooks import TrainHooks
from bistil_ray.method.losses import LossWeights
from bistil_ray.method.phase1 import distill_step_loss
from bistil_ray.method.sparse_finetuning import sparsifiable_parameters
from bistil_ray.method.student import LayerMap
from bistil_ray.method.training import (
    Evaluation,
    LotteryTicketStages,
    StepResult,
    ThroughputMeter,
    TrainingLoop,
    autocast,
    compute_dtype,
    inference_flops_per_token,
    predict_batches,
    rank_and_world,
    to_device,
    training_device,
    training_flops_per_token,
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
    """LT-SFT of `student` (a *ForSequenceClassification or *ForTokenClassification holding theta_0) in place.
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
    batches = BucketedBatches(train, config.batch_size, pad_token_id, seed=config.seed, rank=rank, world_size=world)
    target_ratio = config.target_text_ratio if target_text else 0.0
    if target_ratio > 0:
        target_batches = BucketedBatches(target_text, config.batch_size, pad_token_id, seed=config.seed, rank=rank, world_size=world)
        unlabelled_weights = replace(weights, task=0.0)
    validation_batches = fixed_batches(validation_sample(validation, config.validation_examples), 64, pad_token_id)
    target_validation_batches = (
        fixed_batches(validation_sample(target_validation, config.validation_examples), 64, pad_token_id) if target_validation else None
    )
    label_names = [student.config.id2label[index] for index in range(student.config.num_labels)]

    def train_step(step: int) -> StepResult:
        if uses_target_text(step, target_ratio):
            batch, step_weights = to_device(target_batches.batch(step), device), unlabelled_weights
        else:
            batch, step_weights = to_device(batches.batch(step), device), weights
        with autocast(device, dtype):
            loss, parts = distill_step_loss(network, teacher, batch, step_weights, layer_map, projection)
        tokens = int(batch["attention_mask"].sum())
        width = batch["input_ids"].shape[1]
        flops = tokens * (training_flops_per_token(student, width) + inference_flops_per_token(teacher, width))
        return StepResult(loss, parts, tokens, flops)

    def evaluate(step: int) -> Evaluation:
        predictions, labels = predict_batches(network, validation_batches, device, dtype)
        scores = task_scores(predictions, labels, label_names)
        metrics = {"metric": scores["metric"], "source_score": scores["score"]}
        if "macro_f1" in scores:
            metrics["source_macro_f1"] = scores["macro_f1"]
        if target_validation_batches is not None:
            predictions, labels = predict_batches(network, target_validation_batches, device, dtype)
            metrics["target_validation_score"] = task_scores(predictions, labels, label_names)["score"]
        return Evaluation(scores["score"], metrics, f"source {scores['metric']} {scores['score']:.3f}")

    loop = TrainingLoop(
        name="phase 2", phase="phase2", model=student, network=network, config=config,
        total_steps=config.full_steps + config.sparse_steps, hooks=hooks, meter=ThroughputMeter(device, dtype),
        best_metric="best_source_score", stages=LotteryTicketStages(body, config.full_steps, config.density), log=log,
    )  # fmt: skip
    return loop.run(train_step, evaluate)
