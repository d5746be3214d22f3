"""Does the same training, with the same libraries and seed, build the same weights on another CPU?

The claims table (bench/claims.py) refuses a rebuilt task teacher whose weights differ from the one
its rows were scored with. This benchmark shows which machines can rebuild it: it trains a small
seeded BERT classifier for a few steps, in bf16 autocast (the loops' `precision: auto` on CPUs with
native bf16) and in float32, once per instruction set that oneDNN (the bf16 products) and MKL (the
float32 ones) are allowed to use on this CPU (`ONEDNN_MAX_CPU_ISA`, `MKL_ENABLE_INSTRUCTIONS`), each
in a fresh process, and compares the SHA-256 of the trained weights. A cap stands in for a CPU that
has only that instruction set, as an AMD Zen 4 has AVX512-BF16 but no AMX.

    .venv/bin/python -m bench.cpu_numerics [--steps 10]
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import torch

from bench.common import at_least, arguments, cpu_model, machine, markdown_table, write_report

# Each entry: a name and the environment that caps the kernels' instruction set (empty: what this CPU has).
ISA_CAPS = {
    "this CPU": {},
    "oneDNN AVX512-BF16, no AMX": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"},
    "oneDNN AVX512": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "oneDNN AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "MKL AVX2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}
PRECISIONS = ("bf16", "fp32")


def trained_weights_sha256(precision: str, steps: int) -> str:
    """SHA-256 of a small BERT classifier's weights after `steps` seeded AdamW steps."""
    from transformers import BertConfig, BertForSequenceClassification

    from bistil_ray.method.training import autocast, compute_dtype

    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512, num_labels=4)
    model = BertForSequenceClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    dtype = compute_dtype(torch.device("cpu"), precision)
    for _ in range(steps):
        input_ids, labels = torch.randint(0, config.vocab_size, (16, 32)), torch.randint(0, 4, (16,))
        with autocast(torch.device("cpu"), dtype):
            loss = model(input_ids=input_ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.detach().float().numpy().tobytes())
    return digest.hexdigest()


def in_fresh_process(env: dict[str, str], precision: str, steps: int) -> str:
    """The digest from a new interpreter: the kernels' instruction set is fixed when they first load."""
    code = f"from bench.cpu_numerics import trained_weights_sha256; print(trained_weights_sha256({precision!r}, {steps}))"
    capping = {key for cap in ISA_CAPS.values() for key in cap}
    cleaned = {key: value for key, value in os.environ.items() if key not in capping}
    done = subprocess.run([sys.executable, "-c", code], env={**cleaned, **env}, capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def compared(digests: dict[str, dict[str, str]]) -> dict[str, dict[str, bool]]:
    """Per precision, whether each cap's weights equal this CPU's."""
    return {precision: {cap: digests[cap][precision] == digests["this CPU"][precision] for cap in digests} for precision in PRECISIONS}


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__.splitlines()[0], repeated=False)
    parser.add_argument("--steps", type=at_least(1), default=10, help="training steps of each build")
    args = parser.parse_args(argv)
    digests = {cap: {precision: in_fresh_process(env, precision, args.steps) for precision in PRECISIONS} for cap, env in ISA_CAPS.items()}
    rebuilt = in_fresh_process({}, "bf16", args.steps)  # the same machine twice: the build itself is deterministic
    same = compared(digests)
    record = {"machine": machine(), "steps": args.steps, "digests": digests, "same_as_this_cpu": same,
              "this_cpu_twice_identical": rebuilt == digests["this CPU"]["bf16"]}  # fmt: skip
    rows = [[cap, *[f"`{digests[cap][p][:12]}` {'same' if same[p][cap] else '**differs**'}" for p in PRECISIONS]] for cap in ISA_CAPS]
    text = (
        "# Trained weights on other instruction sets\n\n"
        f"A 2-layer BERT classifier, {args.steps} seeded AdamW steps, one thread, each build in a fresh process on "
        f"{cpu_model()}, torch {torch.__version__}; the kernels capped at each instruction set. SHA-256 of the "
        "trained weights (first 12 hex digits) and whether they equal this CPU's uncapped build.\n\n"
        + markdown_table(["kernels", *[f"{p} weights" for p in PRECISIONS]], rows)
        + f"\n\nThe uncapped bf16 build, run twice: {'identical' if record['this_cpu_twice_identical'] else '**different**'}.\n"
    )
    write_report(args.out, "cpu_numerics", record, text)
    print(text)
    print(json.dumps(same))


if __name__ == "__main__":
    main()
