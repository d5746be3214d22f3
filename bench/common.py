"""What every benchmark shares: repeated, alternating measurements and their medians; each
benchmark's JSON + Markdown report; and the headline figures merged into `summary.json`.

Reports go to `bench/results/` unless a script is given `--out` (smoke runs write elsewhere so that
they never overwrite a real measurement). Every file is written atomically: a reader sees the old
report or the new one, never half of one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from bistil_ray.atomic import atomic_write_text
from bistil_ray.method.training import cpu_bf16_features

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SUMMARY = "summary"

# The figures the issue asks for, with what counts as good: (comparison, bound); None: reported only.
TARGETS: dict[str, tuple[str, float] | None] = {
    "loop_vs_bare": (">=", 0.90),
    "mfu": None,
    "ray_fixed_cost_s": ("<=", 5.0),
    "ray_train_fixed_cost_s": None,
    "trial_beyond_phase2_s": ("<=", 10.0),
    "student_speedup_6l": (">=", 1.8),
    "student_speedup_4l": None,
    "student_speedup_3l": None,
    "sweep_reuse_ratio": ("<=", 0.6),
    "onnx_int8_speedup": (">=", 1.5),
    "onnx_int8_score_ratio": (">=", 0.99),
    "tracking_overhead_mlflow": ("<=", 0.02),
    "serve_throughput_vs_teacher": (">=", 2.5),
    "tracking_overhead_tensorboard": ("<=", 0.02),
}


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= `minimum`. Every count, step budget and seed of a
    benchmark's command line is one, so that a bad value stops it before it trains anything."""

    def whole_number(text: str) -> int:
        value = int(text)  # not a number: argparse says "invalid whole_number value", naming the flag
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is below {minimum}")
        return value

    whole_number.minimum = minimum  # type: ignore[attr-defined]  (for the tests)
    return whole_number


def arguments(description: str, *, repeated: bool = True) -> argparse.ArgumentParser:
    """A parser with the flags every benchmark has (`--repeats` unless it measures nothing itself);
    scripts add their own sizes."""
    parser = argparse.ArgumentParser(description=description)
    if repeated:
        parser.add_argument("--repeats", type=at_least(1), default=3, help="measurements of each variant (the median is reported)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the reports and summary.json")
    return parser


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    """(result, wall seconds) of `function()`."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def alternating(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Each variant's measurements, `repeats` each, run in alternating order (A B, B A, A B, ...)
    so that a slow spell of the machine hits every variant alike."""
    names = list(variants)
    measured: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else reversed(names):
            measured[name].append(variants[name]())
    return measured


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "measured_at": now(),
    }


def cpu_model() -> str:
    """The CPU's model name and the instruction sets its float kernels dispatch on. Trained weights
    depend on them (oneDNN's bf16 products on AMX, AVX512-BF16 and AVX2 round differently; so do
    MKL's float32 ones), so two machines with the same libraries can build different models."""
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
    except OSError:
        names = []
    isa = "+".join([torch.backends.cpu.get_cpu_capability(), *cpu_bf16_features()])
    return f"{names[0] if names else platform.processor() or platform.machine()} ({isa})"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_report(out_dir: Path, name: str, record: dict[str, Any], markdown: str) -> None:
    """`<out_dir>/<name>.json` (the full record) and `<out_dir>/<name>.md` (for people)."""
    atomic_write_text(Path(out_dir) / f"{name}.json", json.dumps(record, indent=1, sort_keys=True) + "\n")
    atomic_write_text(Path(out_dir) / f"{name}.md", markdown.rstrip() + "\n")


def merge_summary(out_dir: Path, figures: dict[str, float], source: str) -> dict[str, Any]:
    """Set `figures` in `<out_dir>/summary.json`, keeping the figures other benchmarks wrote, and
    rewrite `summary.md` from it. The figures sit at the top level; `measured_by` says which
    script wrote each and when."""
    path = Path(out_dir) / f"{SUMMARY}.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    provenance = summary.setdefault("measured_by", {})
    for name, value in figures.items():
        summary[name] = value
        provenance[name] = {"script": source, "at": now()}
    atomic_write_text(path, json.dumps(summary, indent=1, sort_keys=True) + "\n")
    atomic_write_text(Path(out_dir) / f"{SUMMARY}.md", summary_markdown(summary))
    return summary


def verdict(name: str, value: float) -> str:
    target = TARGETS.get(name)
    if target is None:
        return "reported"
    comparison, bound = target
    met = value >= bound if comparison == ">=" else value <= bound
    return f"{'met' if met else 'NOT met'} ({comparison} {bound:g})"


def summary_markdown(summary: dict[str, Any]) -> str:
    figures = {name: value for name, value in summary.items() if name != "measured_by"}
    ordered = [name for name in TARGETS if name in figures] + sorted(set(figures) - set(TARGETS))
    rows = [
        [name, format_number(figures[name]), verdict(name, figures[name]), summary["measured_by"][name]["script"]]
        for name in ordered
    ]
    return "# bistil_ray benchmarks: summary\n\n" + markdown_table(["figure", "value", "target", "measured by"], rows)


def format_number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(format_number(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
