"""The demo's best students on ONNX Runtime: float32 and int8 against PyTorch and the teacher.

For each pair's best student of a finished sweep (summary.parquet, `is_best`), in one process on
the pair's target-language test set: the task teacher (PyTorch), the student (PyTorch float32), the
student exported by `bistil_ray.export --onnx --int8` (into a copy: the sweep's results stay as they
were) as an ONNX Runtime float32 and int8 graph. Speed is the sweep's own measurement
(`evaluation.measure_efficiency`: batch-1 latency and batch-32 throughput, every text through each
model in turn), repeated; accuracy is on the whole target test set.

    onnx_int8_speedup     = int8 ONNX batch-32 throughput / PyTorch float32 student's (lowest over pairs)
    onnx_int8_score_ratio = int8 ONNX target accuracy / PyTorch float32 student's (lowest over pairs)

    .venv/bin/python -m bench.onnx_speed [RESULTS_DIR] [--repeats 3]
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from statistics import median

import numpy as np
import pyarrow.parquet as pq
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from bench.common import arguments, machine, markdown_table, merge_summary, write_report
from bistil_ray import pipeline
from bistil_ray.errors import UserInputError, exit_on_user_error
from bistil_ray.method.evaluation import directory_bytes, measure_efficiency, predict
from bistil_ray.method.export import load_exported
from bistil_ray.method.onnx_export import OnnxClassifier, export_onnx
from bistil_ray.orchestration.sweep_config import SweepConfig

MODELS = ("teacher", "pytorch_fp32", "onnx_fp32", "onnx_int8")


def best_students(results_dir: Path) -> tuple[SweepConfig, list[dict]]:
    summary, snapshot = results_dir / "summary.parquet", results_dir / "sweep.json"
    for path in (summary, snapshot):
        if not path.is_file():
            raise UserInputError(f"{path}: not found; pass a finished sweep's folder (make demo writes results/demo)")
    rows = [row for row in pq.read_table(summary).to_pylist() if row["is_best"]]
    return SweepConfig.model_validate_json(snapshot.read_text()), rows


def measure_pair(sweep: SweepConfig, row: dict, storage: Path, repeats: int, work_dir: Path) -> dict:
    lang = row["target_lang"]
    inputs = pipeline.resolve_inputs(sweep.run_config(lang, {}))
    teacher_dir = storage / "artifacts" / "task_teacher" / row["task_teacher_key"]
    copy = work_dir / lang
    shutil.copytree(row["student_path"], copy)
    graphs = export_onnx(copy, int8=True)
    student, tokenizer = load_exported(copy)
    models = {
        "teacher": (AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval(), AutoTokenizer.from_pretrained(teacher_dir)),
        "pytorch_fp32": (student, tokenizer),
        "onnx_fp32": (OnnxClassifier(graphs["float32"]), tokenizer),
        "onnx_int8": (OnnxClassifier(graphs["int8"]), tokenizer),
    }
    fields, test = inputs.task.text_fields, inputs.target_test
    texts = list(test[fields[0]])[:256]
    runs = [measure_efficiency(models, texts) for _ in range(repeats)]
    sizes = {"teacher": directory_bytes(teacher_dir), "pytorch_fp32": directory_bytes(copy) - directory_bytes(copy / "onnx"),
             "onnx_fp32": graphs["float32"].stat().st_size, "onnx_int8": graphs["int8"].stat().st_size}  # fmt: skip
    figures = {}
    predictions = {name: predict(model, model_tokenizer, test, fields) for name, (model, model_tokenizer) in models.items()}
    labels = np.asarray(test["label"])
    for name in models:
        figures[name] = {
            "target_score": float(np.mean(predictions[name] == labels)),
            "agreement_with_pytorch": float(np.mean(predictions[name] == predictions["pytorch_fp32"])),
            "latency_ms": median(run[name].latency_ms_batch1 for run in runs),
            "throughput": median(run[name].throughput_batch32 for run in runs),
            "bytes": sizes[name],
        }
    student_figures = figures["pytorch_fp32"]
    for name, values in figures.items():
        values["speedup_vs_pytorch"] = values["throughput"] / student_figures["throughput"]
        values["speedup_vs_teacher"] = values["throughput"] / figures["teacher"]["throughput"]
        values["score_ratio_vs_pytorch"] = values["target_score"] / student_figures["target_score"]
    return {"pair": f"{sweep.source_lang}-{lang}", "student": row["student_path"], "layers": row["student_layers"],
            "test_examples": len(test), "timed_texts": len(texts), "models": figures}  # fmt: skip


def markdown(record: dict) -> str:
    header = ["pair", "model", "target accuracy", "vs PyTorch", "same prediction as PyTorch", "ms at batch 1", "seq/s at batch 32",
              "speed-up vs PyTorch", "vs teacher", "MB"]  # fmt: skip
    rows = [
        [pair["pair"], name, f"{m['target_score']:.3f}", f"{m['score_ratio_vs_pytorch']:.3f}",
         f"{m['agreement_with_pytorch']:.3f}", f"{m['latency_ms']:.2f}",
         f"{m['throughput']:.0f}", f"{m['speedup_vs_pytorch']:.2f}x", f"{m['speedup_vs_teacher']:.2f}x", f"{m['bytes'] / 1e6:.1f}"]
        for pair in record["pairs"] for name, m in pair["models"].items()
    ]  # fmt: skip
    settings = record["settings"]
    return (
        "# The best students on ONNX Runtime\n\n"
        f"Sweep `{settings['results_dir']}`; each pair's best student by the objective; speed medians of "
        f"{settings['repeats']} measurements, every model in turn on the same (up to 256) target-language test "
        f"texts ({record['machine']['torch_threads']} threads for PyTorch and ONNX Runtime alike); accuracy on the whole "
        "target test set. int8: dynamic quantisation (int8 weights, activations quantised at run time).\n\n"
        + markdown_table(header, rows)
    )


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("results_dir", nargs="?", type=Path, default=Path("results") / "demo", help="a finished sweep's folder")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    with exit_on_user_error("bench.onnx_speed"):
        sweep, rows = best_students(args.results_dir)
        work_dir = Path(tempfile.mkdtemp(prefix="bistil-onnx-"))
        try:
            pairs = [measure_pair(sweep, row, args.results_dir.resolve().parent, args.repeats, work_dir) for row in rows]
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
    record = {
        "settings": {"results_dir": str(args.results_dir), "repeats": args.repeats},
        "machine": machine(),
        "pairs": pairs,
    }
    write_report(args.out, "onnx_speed", record, markdown(record))
    merge_summary(
        args.out,
        {
            "onnx_int8_speedup": min(pair["models"]["onnx_int8"]["speedup_vs_pytorch"] for pair in pairs),
            "onnx_int8_score_ratio": min(pair["models"]["onnx_int8"]["score_ratio_vs_pytorch"] for pair in pairs),
        },
        "bench.onnx_speed",
    )
    print(markdown(record))


if __name__ == "__main__":
    main()
