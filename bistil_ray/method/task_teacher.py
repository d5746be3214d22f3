"""The task teacher: the multilingual teacher fine-tuned on source-language task data.

Built once per (teacher, task, source language, recipe) and reused for every target language and
trial. Three recipes (`TaskTeacherConfig.method`):
  full         every parameter trains (the embeddings stay frozen by default);
  lt_sft       Lottery-Ticket Sparse Fine-Tuning, as the reference trains its task SFTs: the first half
               of the steps dense, then the body is reset to the pretrained weights and only the
               `density` share of entries that moved most trains in the second half, so the teacher
               stays close to the pretrained model whose cross-lingual alignment it inherits;
  frozen_body  the encoder stays as pretrained, the pooler and classifier train: a probe.
The best checkpoint by source-validation score is kept (for lt_sft, of the sparse half).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from transformers import PreTrainedModel

from bistil_ray.config import TaskTeacherConfig
from bistil_ray.method.batching import BucketedBatches, Example, fixed_batches, validation_sample
from bistil_ray.method.evaluation import task_scores
from bistil_ray.method.hooks import TrainHooks
from bistil_ray.method.sparse_finetuning import sparsifiable_parameters
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


def train_task_teacher(
    model: PreTrainedModel,
    train: Sequence[Example],
    validation: Sequence[Example],
    config: TaskTeacherConfig,
    hooks: TrainHooks,
    pad_token_id: int,
    log: Any = print,
) -> dict[str, float]:
    """Fine-tune `model` (a *ForSequenceClassification or *ForTokenClassification) in place; it ends with its best weights."""
    device = training_device()
    dtype = compute_dtype(device, config.precision)
    rank, world = rank_and_world()
    torch.manual_seed(config.seed)
    if config.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    body = sparsifiable_parameters(model)
    if config.method == "frozen_body":
        for parameter in body.values():
            parameter.requires_grad_(False)
    # A frozen encoder runs forward only: counting its backward would put MFU above 100%.
    flops_per_token = inference_flops_per_token if config.method == "frozen_body" else training_flops_per_token
    network = wrap_for_data_parallel(model, device)
    network.train()
    batches = BucketedBatches(train, config.batch_size, pad_token_id, seed=config.seed, rank=rank, world_size=world)
    validation_batches = fixed_batches(validation_sample(validation, config.validation_examples), 64, pad_token_id)
    label_names = [model.config.id2label[index] for index in range(model.config.num_labels)]

    def train_step(step: int) -> StepResult:
        batch = to_device(batches.batch(step), device)
        with autocast(device, dtype):
            loss = network(**batch).loss
        tokens = int(batch["attention_mask"].sum())
        return StepResult(loss, {}, tokens, tokens * flops_per_token(model, batch["input_ids"].shape[1]))

    def evaluate(step: int) -> Evaluation:
        predictions, labels = predict_batches(network, validation_batches, device, dtype)
        scores = task_scores(predictions, labels, label_names)
        metrics = {"method": config.method, "metric": scores["metric"], "source_score": scores["score"]}
        if "macro_f1" in scores:
            metrics["source_macro_f1"] = scores["macro_f1"]
        return Evaluation(scores["score"], metrics, f"source {scores['metric']} {scores['score']:.3f}")

    stages = LotteryTicketStages(body, config.dense_steps, config.density) if config.method == "lt_sft" else None
    loop = TrainingLoop(
        name="task teacher", phase="task_teacher", model=model, network=network, config=config, total_steps=config.steps,
        hooks=hooks, meter=ThroughputMeter(device, dtype), best_metric="best_source_score", stages=stages, log=log,
    )  # fmt: skip
    return loop.run(train_step, evaluate)
