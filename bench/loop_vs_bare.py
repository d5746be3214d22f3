"""Is bistil_ray's training loop as fast as a bare PyTorch loop, and how much of the machine does it use?

For each phase, the same student (reset to the same weights before every run), the same batches and
the same loss maths go once through bistil_ray's loop (`train_phase1` / `train_phase2`, LocalHooks
without checkpoints, the demo sweep's settings, one small evaluation per stage) and once through the
bare loop below (forward, loss, backward, clip, AdamW, and LT-SFT's masking in phase 2; in the
precision bistil_ray's loop uses: bf16 autocast where the hardware computes bf16, float32 elsewhere),
alternating over repeats. Where that precision is bf16, bistil_ray's loop also runs in float32 alongside:
the before/after of mixed precision. Throughput is non-padding tokens per wall second, bistil_ray's
set-up and evaluations included; the bare loop gets its batches ready-made.

    loop_vs_bare = bistil_ray's tokens/s / the bare loop's, the lower of the two phases
    mfu          = model FLOP/s of bistil_ray's phase 1 / this machine's matmul FLOP/s in the
                   loop's precision (same run)

    .venv/bin/python -m bench.loop_vs_bare [--phase1-steps 30] [--phase2-steps 40] [--repeats 3]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import transformers
from transformers import PreTrainedModel

from bench.common import at_least, alternating, arguments, machine, markdown_table, median, merge_summary, timed, write_report
from bench.fixtures import BenchData, demo_sweep, load_bench_data, student_of, trimmed_teacher
from bistil_ray.config import Phase1Config, Phase2Config
from bistil_ray.method.batching import BucketedBatches
from bistil_ray.method.hooks import LocalHooks
from bistil_ray.method.losses import (
    LossWeights,
    attention_implementation,
    attention_mse,
    forward_kwargs,
    hard_label_loss,
    hidden_mse,
    soft_cross_entropy,
)
from bistil_ray.method.phase1 import bilingual_stream, phase1_weights, train_phase1
from bistil_ray.method.phase2 import phase2_weights, train_phase2, uses_target_text
from bistil_ray.method.sparse_finetuning import (
    SparseUpdate,
    reset_to_initial,
    select_lottery_ticket,
    snapshot,
    sparsifiable_parameters,
)
from bistil_ray.method.student import LayerMap
from bistil_ray.method.training import (
    autocast,
    compute_dtype,
    inference_flops_per_token,
    make_optimizer,
    peak_matmul_flops,
    to_device,
    training_device,
    training_flops_per_token,
)

PHASE2_VALIDATION_EXAMPLES = 32  # one evaluation batch: evaluations must not dominate a short run
Batch = dict[str, torch.Tensor]


def quiet(message: str) -> None:
    """The loops' progress lines would interleave with the benchmark's own output."""


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- the bare loop ---------------------------------------------------------------------------------


def bare_loss(student: PreTrainedModel, teacher: PreTrainedModel, batch: Batch, weights: LossWeights, layer_map: LayerMap):
    """The distillation loss, written out with the losses module's terms."""
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    with torch.no_grad():
        target = teacher(**inputs, **forward_kwargs(weights))
    output = student(**inputs, **forward_kwargs(weights))
    mask = batch["attention_mask"]
    loss = torch.zeros((), device=mask.device)
    if weights.hidden > 0:
        loss = loss + weights.hidden * hidden_mse(output.hidden_states, target.hidden_states, layer_map.hidden_pairs, mask)
    if weights.attn > 0:
        loss = loss + weights.attn * attention_mse(output.attentions, target.attentions, layer_map.attention_pairs, mask)
    if weights.ce > 0:
        loss = loss + weights.ce * soft_cross_entropy(output.logits, target.logits, weights.temperature)
    if weights.task > 0 and "labels" in batch:
        loss = loss + weights.task * hard_label_loss(output.logits, batch["labels"])
    return loss


def bare_step(student, teacher, batch, weights, layer_map, optimizer, dtype, sparse: SparseUpdate | None = None) -> None:
    with autocast(training_device(), dtype):
        loss = bare_loss(student, teacher, batch, weights, layer_map)
    loss.backward()
    if sparse is not None:
        sparse.mask_gradients()
    torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if sparse is not None:
        sparse.restore_frozen_entries()


def bare_phase1(student, teacher, batches: list[Batch], config: Phase1Config, layer_map: LayerMap) -> None:
    weights = phase1_weights(config)
    dtype = compute_dtype(training_device(), config.precision)
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    for batch in batches:
        bare_step(student, teacher, batch, weights, layer_map, optimizer, dtype)


def bare_phase2(student, teacher, batches: list[Batch], config: Phase2Config, layer_map: LayerMap) -> None:
    """Dense steps, the lottery ticket, then masked steps from theta_0 with a fresh optimiser."""
    weights = phase2_weights(config)
    dtype = compute_dtype(training_device(), config.precision)
    body = sparsifiable_parameters(student, freeze_layer_norm=config.freeze_layer_norm)
    theta_0 = snapshot(body)
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sparse = None
    for step, batch in enumerate(batches):
        if step == config.full_steps:
            masks = select_lottery_ticket(body, theta_0, config.density)
            reset_to_initial(body, theta_0)
            sparse = SparseUpdate(body, masks, theta_0)
            optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        bare_step(student, teacher, batch, weights, layer_map, optimizer, dtype, sparse)


# --- one phase, both ways ----------------------------------------------------------------------------


@dataclass
class PhaseBench:
    """A phase's models, its batches for the bare loop, and how to run it through bistil_ray."""

    name: str
    teacher: PreTrainedModel
    student: PreTrainedModel
    initial: dict[str, torch.Tensor]
    batches: list[Batch]  # on the training device, step by step
    collate_seconds: float  # building those batches, which bistil_ray's loop does inside its steps
    precision: str  # the phase's setting, which both loops follow
    run_bistil: Callable[[str], Any]  # takes a precision setting: the phase's, or "fp32" for the before
    run_bare: Callable[[list[Batch]], Any]

    @property
    def dtype(self) -> torch.dtype:
        return compute_dtype(training_device(), self.precision)

    def timed_run(self, run: Callable[[], Any]) -> float:
        self.student.load_state_dict(self.initial)
        device = training_device()
        synchronize(device)
        _, seconds = timed(run)
        synchronize(device)
        return seconds

    def measure(self, repeats: int) -> dict[str, Any]:
        # Untimed warm-up: first calls pay for allocations and kernel selection.
        self.timed_run(lambda: self.run_bare(self.batches[:2]))
        variants = {
            "bistil": lambda: self.timed_run(lambda: self.run_bistil(self.precision)),
            "bare": lambda: self.timed_run(lambda: self.run_bare(self.batches)),
        }
        if self.dtype != torch.float32:
            variants["bistil_fp32"] = lambda: self.timed_run(lambda: self.run_bistil("fp32"))
        seconds = alternating(variants, repeats)
        tokens = sum(int(batch["attention_mask"].sum()) for batch in self.batches)
        slots = sum(batch["attention_mask"].numel() for batch in self.batches)
        flops = sum(
            int(batch["attention_mask"].sum())
            * (
                training_flops_per_token(self.student, batch["input_ids"].shape[1])
                + inference_flops_per_token(self.teacher, batch["input_ids"].shape[1])
            )
            for batch in self.batches
        )
        peak = peak_matmul_flops(training_device().type, self.dtype)
        bistil, bare = median(seconds["bistil"]), median(seconds["bare"])
        fp32 = median(seconds["bistil_fp32"]) if "bistil_fp32" in seconds else bistil
        return {
            "precision": str(self.dtype).removeprefix("torch."),
            "steps": len(self.batches),
            "tokens": tokens,
            "padding_fraction": 1 - tokens / slots,
            "collate_ms_per_step": 1000 * self.collate_seconds / len(self.batches),
            "bistil_seconds": seconds["bistil"],
            "bare_seconds": seconds["bare"],
            "bistil_tokens_per_s": tokens / bistil,
            "bare_tokens_per_s": tokens / bare,
            "ratio": bare / bistil,
            "bistil_fp32_seconds": seconds.get("bistil_fp32", []),
            "speedup_over_fp32": fp32 / bistil,
            "bistil_mfu": flops / bistil / peak,
            "bare_mfu": flops / bare / peak,
        }


def phase1_bench(data: BenchData, config: Phase1Config) -> PhaseBench:
    weights = phase1_weights(config)
    teacher = trimmed_teacher(data, attention_implementation(weights)).to(training_device())
    student, layer_map = student_of(teacher, 6)
    text = data.phase1_text(config)
    next_batch = bilingual_stream(text, config, data.pad_token_id)
    cpu_batches, collate_seconds = timed(lambda: [next_batch(step) for step in range(config.steps)])
    tokenizer = data.vocabulary.tokenizer
    return PhaseBench(
        name="phase 1",
        teacher=teacher,
        student=student,
        initial={key: value.clone() for key, value in student.state_dict().items()},
        batches=[to_device(batch, training_device()) for batch in cpu_batches],
        collate_seconds=collate_seconds,
        precision=config.precision,
        run_bistil=lambda precision: train_phase1(
            teacher, student, layer_map, None, text, config.model_copy(update={"precision": precision}),
            LocalHooks(), tokenizer, log=quiet,
        ),
        run_bare=lambda batches: bare_phase1(student, teacher, batches, config, layer_map),
    )


def phase2_bench(data: BenchData, config: Phase2Config) -> PhaseBench:
    weights = phase2_weights(config)
    labels = len(data.inputs.task.label_names)
    teacher = trimmed_teacher(data, attention_implementation(weights), num_labels=labels).to(training_device())
    student, layer_map = student_of(teacher, 6)
    train, validation = data.task_examples(config.max_length)
    validation = validation[:PHASE2_VALIDATION_EXAMPLES]
    target_text = data.target_text_examples(config.max_length)
    total_steps = config.full_steps + config.sparse_steps

    def step_batches() -> list[Batch]:
        # The batch train_phase2 draws at each step: labelled source, or unlabelled target text.
        labelled = BucketedBatches(train, config.batch_size, data.pad_token_id, seed=config.seed)
        unlabelled = BucketedBatches(target_text, config.batch_size, data.pad_token_id, seed=config.seed)
        return [
            (unlabelled if uses_target_text(step, config.target_text_ratio) else labelled).batch(step)
            for step in range(total_steps)
        ]

    cpu_batches, collate_seconds = timed(step_batches)
    return PhaseBench(
        name="phase 2",
        teacher=teacher,
        student=student,
        initial={key: value.clone() for key, value in student.state_dict().items()},
        batches=[to_device(batch, training_device()) for batch in cpu_batches],
        collate_seconds=collate_seconds,
        precision=config.precision,
        run_bistil=lambda precision: train_phase2(
            teacher, student, layer_map, None, train, validation, config.model_copy(update={"precision": precision}),
            LocalHooks(), data.pad_token_id, target_text=target_text, log=quiet,
        ),
        run_bare=lambda batches: bare_phase2(student, teacher, batches, config, layer_map),
    )


# --- optimiser choice ------------------------------------------------------------------------------


def optimizer_step_ms(model: torch.nn.Module, repeats: int = 5) -> dict[str, float]:
    """Median AdamW step time over the model's parameters with each of PyTorch's implementations."""
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    saved = [parameter.detach().clone() for parameter in parameters]
    for parameter in parameters:
        parameter.grad = torch.randn_like(parameter)
    timings = {}
    for name, options in {"single_tensor": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}.items():
        optimizer = torch.optim.AdamW(parameters, lr=1e-4, **options)
        optimizer.step()  # allocates the moment buffers
        timings[name] = 1000 * median([timed(optimizer.step)[1] for _ in range(repeats)])
    with torch.no_grad():
        for parameter, value in zip(parameters, saved):
            parameter.copy_(value)
            parameter.grad = None
    return timings


def adamw_implementation(model: torch.nn.Module, config: Phase1Config) -> str:
    """Which of those bistil_ray's optimiser runs here: without `fused`, torch runs foreach on
    CUDA tensors and the single-tensor loop on CPU ones."""
    if make_optimizer(model.named_parameters(), config).defaults["fused"]:
        return "fused"
    return "foreach" if training_device().type == "cuda" else "single_tensor"


# --- report ------------------------------------------------------------------------------------------


def markdown(record: dict[str, Any]) -> str:
    rows = []
    for name in ("phase1", "phase2"):
        phase = record[name]
        rows.append(
            [
                name, phase["steps"], phase["tokens"], phase["bistil_tokens_per_s"], phase["bare_tokens_per_s"],
                phase["ratio"], phase["bistil_mfu"], phase["precision"], phase["speedup_over_fp32"],
                phase["padding_fraction"], phase["collate_ms_per_step"],
            ]
        )
    header = [
        "phase", "steps", "tokens", "bistil tok/s", "bare tok/s", "bistil/bare", "MFU", "precision",
        "bistil speed-up over its fp32 run", "padding", "collate ms/step",
    ]
    optimizer = record["optimizer_step_ms"]
    return (
        "# bistil_ray's training loop against a bare PyTorch loop\n\n"
        f"Medians of {record['settings']['repeats']} alternating runs; 6-layer student of "
        f"{record['settings']['teacher']} with a trimmed vocabulary, demo sweep settings.\n\n"
        + markdown_table(header, rows)
        + f"\n**loop_vs_bare** = {record['loop_vs_bare']:.3f} (lower phase); **mfu** = {record['mfu']:.3f} "
        f"of {record['peak_matmul_flops'] / 1e9:.1f} GFLOP/s measured {record['phase1']['precision']} matmul "
        f"({record['peak_matmul_flops_fp32'] / 1e9:.1f} GFLOP/s in float32).\n\n"
        "AdamW step over the student's parameters (ms): "
        + ", ".join(f"{name} {value:.1f}" for name, value in optimizer.items())
        + f" (bistil_ray uses {record['bistil_adamw']}).\n"
    )


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--phase1-steps", type=at_least(1), default=30)
    parser.add_argument("--phase2-steps", type=at_least(2), default=40, help="half dense, half sparse")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()

    sweep = demo_sweep()
    phase1_config = sweep.phase1.model_copy(
        update={"steps": args.phase1_steps, "eval_every": args.phase1_steps, "validation_sentences": 16}
    )
    dense = args.phase2_steps // 2
    phase2_config = sweep.phase2.model_copy(
        update={"full_steps": dense, "sparse_steps": args.phase2_steps - dense, "eval_every": args.phase2_steps}
    )
    data = load_bench_data(sweep.target_langs[0])
    phase1 = phase1_bench(data, phase1_config)
    phase1_result = phase1.measure(args.repeats)
    optimizer = optimizer_step_ms(phase1.student)
    bistil_adamw = adamw_implementation(phase1.student, phase1_config)
    del phase1
    phase2_result = phase2_bench(data, phase2_config).measure(args.repeats)
    peak = peak_matmul_flops(training_device().type, compute_dtype(training_device(), phase1_config.precision))
    peak_fp32 = peak_matmul_flops(training_device().type, torch.float32)

    record = {
        "settings": {
            "repeats": args.repeats,
            "teacher": sweep.teacher,
            "pair": f"{sweep.source_lang}-{sweep.target_langs[0]}",
            "vocab_size": data.vocabulary.size,
            "student_layers": 6,
            "phase1": phase1_config.model_dump(mode="json"),
            "phase2": phase2_config.model_dump(mode="json"),
        },
        "machine": machine(),
        "peak_matmul_flops": peak,
        "peak_matmul_flops_fp32": peak_fp32,
        "phase1": phase1_result,
        "phase2": phase2_result,
        "optimizer_step_ms": optimizer,
        "bistil_adamw": bistil_adamw,
        "loop_vs_bare": min(phase1_result["ratio"], phase2_result["ratio"]),
        "mfu": phase1_result["bistil_mfu"],
    }
    write_report(args.out, "loop_vs_bare", record, markdown(record))
    merge_summary(
        args.out,
        {
            "loop_vs_bare": record["loop_vs_bare"],
            "loop_vs_bare_phase1": phase1_result["ratio"],
            "loop_vs_bare_phase2": phase2_result["ratio"],
            "mfu": record["mfu"],
            "phase1_tokens_per_s": phase1_result["bistil_tokens_per_s"],
            "phase2_tokens_per_s": phase2_result["bistil_tokens_per_s"],
            "peak_matmul_gflops": peak / 1e9,
            "training_precision": phase1_result["precision"],
            "bf16_speedup_phase1": phase1_result["speedup_over_fp32"],
            "bf16_speedup_phase2": phase2_result["speedup_over_fp32"],
        },
        "bench.loop_vs_bare",
    )
    print(markdown(record))


if __name__ == "__main__":
    main()
