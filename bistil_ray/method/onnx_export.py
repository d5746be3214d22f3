"""A student as ONNX for ONNX Runtime: float32, and dynamically quantised to int8 for CPUs.

    <student>/onnx/model.onnx            the float32 graph (torch.onnx, dynamic batch and length)
    <student>/onnx/model_quantized.onnx  int8 weights, activations quantised at run time
                                         (onnxruntime.quantization.quantize_dynamic)

The layout of the Hugging Face hub's ONNX exports: the student directory, with its tokenizer, stays
one folder a user ships. `OnnxClassifier` runs a graph with the interface of a PyTorch classifier
(`model(**batch).logits`), so evaluation and the speed measurement use it unchanged.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from bistil_ray.atomic import atomic_directory, remove_dead_staging
from bistil_ray.method.export import load_exported

ONNX_DIR = "onnx"
FLOAT32_FILE = "model.onnx"
INT8_FILE = "model_quantized.onnx"
GRAPH_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_onnx(student_dir: Path, *, int8: bool = True) -> dict[str, Path]:
    """Write the student's ONNX graphs into `<student_dir>/onnx/` (replacing an earlier export);
    returns {"float32": path, "int8": path}."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    student_dir = Path(student_dir)
    model, tokenizer = load_exported(student_dir)
    sample = tokenizer(["a short text", "a somewhat longer second text"], padding=True, return_tensors="pt")
    names = [name for name in GRAPH_INPUTS if name in sample]
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dynamic = {name: {0: batch, 1: sequence} for name in names}
    final = student_dir / ONNX_DIR
    remove_dead_staging(final)
    if final.exists():
        shutil.rmtree(final)
    with atomic_directory(final) as staging:
        torch.onnx.export(
            model.eval(),
            (),
            kwargs={name: sample[name] for name in names},
            f=staging / FLOAT32_FILE,
            input_names=names,
            output_names=["logits"],
            dynamic_shapes=dynamic,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        if int8:
            quantize_dynamic(staging / FLOAT32_FILE, staging / INT8_FILE, weight_type=QuantType.QInt8)
    paths = {"float32": final / FLOAT32_FILE}
    if int8:
        paths["int8"] = final / INT8_FILE
    return paths


class OnnxClassifier(nn.Module):
    """An ONNX Runtime session that answers like a *ForSequenceClassification or *ForTokenClassification
    model on the CPU."""

    def __init__(self, path: Path, threads: int | None = None):
        super().__init__()
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()  # the same CPUs PyTorch uses
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [graph_input.name for graph_input in self.session.get_inputs()]

    def forward(self, **batch: torch.Tensor) -> SimpleNamespace:
        feed = {name: np.ascontiguousarray(batch[name].cpu().numpy(), dtype=np.int64) for name in self.input_names}
        return SimpleNamespace(logits=torch.from_numpy(self.session.run(["logits"], feed)[0]))
