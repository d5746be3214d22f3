"""The task teacher: the multilingual teacher fine-tuned on source-language task data.

Built once per (teacher, task, source language, recipe) and reused for every target language and
trial. Three recipes (`TaskTeacherConfig.method`):
  full         every parameter trains (the embeddings stay frozen by default);
  lt_sft       Lottery-Ticket Sparse Fine-Tuning, as the reference trains its task SFTs: the first half
               of the steps dense, then the body is reset to the pretrained weights and only the
               `density` share of entries that moved most trains in the second half, so the teacher
               stays close to the pretrained model whose cross-lingual alignment it inherits;
  frozen_body  the encoder stays as pretrained, the pooler and classifier train: a probe.
The best checkpoint by source-validation accuracy is kept (for lt_sft, of the sparse half).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from transformers import PreTrainedModel

from bistil_ray.config import TaskTeacherConfig
from bistil_ray.method.batching import BucketedBatches, Example, fixed_batches
from bistil_ray.method.evaluation import classification_scores
from bistil_ray.method.hooks import TrainHooks
from bistil_ray.method.sparse_finetuning import (
    SparseUpdate,
    reset_to_initial,
    select_lottery_ticket,
    snapshot,
    sparsifiable_parameters,
)
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


def train_task_teacher(
    model: PreTrainedModel,
    train: Sequence[Example],
    validation: Sequence[Example],
    config: TaskTeacherConfig,
    hooks: TrainHooks,
    pad_token_id: int,
    log: Any = print,
) -> dict[str, float]:
    """Fine-tune `model` (a *ForSequenceClassification) in place; it ends with its best weights."""
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
    theta_0 = snapshot(body) if config.method == "lt_sft" else {}
    # A frozen encoder runs forward only: counting its backward would put MFU above 100%.
    flops_per_token = inference_flops_per_token if config.method == "frozen_body" else training_flops_per_token
    network = wrap_for_data_parallel(model, device)
    network.train()
    batches = BucketedBatches(train, config.batch_size, pad_token_id, seed=config.seed, rank=rank, world_size=world)
    validation_batches = fixed_batches(validation, 64, pad_token_id)

    def new_stage_optimizer(steps: int):
        optimizer = make_optimizer(model.named_parameters(), config)
        return optimizer, make_schedule(optimizer, steps, config.warmup_ratio)

    optimizer, scheduler = new_stage_optimizer(config.dense_steps)
    sparse: SparseUpdate | None = None

    def begin_sparse_stage(masks: dict[str, torch.Tensor]):
        nonlocal optimizer, scheduler, sparse
        reset_to_initial(body, theta_0)
        sparse = SparseUpdate(body, masks, theta_0)
        optimizer, scheduler = new_stage_optimizer(config.steps - config.dense_steps)

    start_step, best_accuracy, best_weights = 0, -1.0, None
    if hooks.resume_from is not None:
        if (hooks.resume_from / "masks.safetensors").exists():
            begin_sparse_stage(load_tensors(hooks.resume_from, "masks"))
        state = load_training_state(hooks.resume_from, optimizer, scheduler)
        model.load_state_dict(load_tensors(hooks.resume_from, "model"))
        if (hooks.resume_from / "best.safetensors").exists():
            best_weights = load_tensors(hooks.resume_from, "best")
        start_step, best_accuracy = state["step"], state["best_accuracy"]
        log(f"task teacher: resumed at step {start_step}")

    meter = ThroughputMeter(device, dtype)
    metrics: dict[str, float] = {}
    for step in range(start_step, config.steps):
        if step == config.dense_steps:
            begin_sparse_stage(select_lottery_ticket(body, theta_0, config.density))
            log(f"task teacher: lottery ticket of {sparse.kept_count():,} entries (density {config.density}); sparse half")
        batch = to_device(batches.batch(step), device)
        with autocast(device, dtype):
            loss = network(**batch).loss
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
        meter.add(tokens, tokens * flops_per_token(model, batch["input_ids"].shape[1]))

        stage_end = step + 1 in (config.dense_steps, config.steps)
        if (step + 1) % config.eval_every == 0 or stage_end:
            predictions, labels = predict_batches(network, validation_batches, device, dtype)
            scores = classification_scores(predictions, labels, model.config.num_labels)
            choosing = config.method != "lt_sft" or sparse is not None
            if choosing and scores["accuracy"] > best_accuracy:
                best_accuracy = scores["accuracy"]
                best_weights = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
            metrics = {
                "phase": "task_teacher",
                "method": config.method,
                "step": step + 1,
                "loss": loss.item(),
                "source_accuracy": scores["accuracy"],
                "source_macro_f1": scores["macro_f1"],
                "best_source_accuracy": best_accuracy,
                **meter.read(),
            }
            log(
                f"task teacher step {step + 1}/{config.steps}: loss {loss.item():.4f} "
                f"source acc {scores['accuracy']:.3f} {metrics['tokens_per_s']:.0f} tok/s MFU {metrics['mfu']:.1%}"
            )
            state = {"step": step + 1, "best_accuracy": best_accuracy}
            groups = {"model": unwrap(network).state_dict()}
            if best_weights is not None:
                groups["best"] = best_weights
            if sparse is not None:
                groups["masks"] = sparse.state_dict()
            report_evaluation(
                hooks,
                metrics,
                lambda directory: save_training_state(directory, groups, optimizer, scheduler, state),
            )

    if best_weights is not None:
        model.load_state_dict(best_weights)
    return metrics
