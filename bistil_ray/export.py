"""Export a student for deployment with ONNX Runtime.

    python -m bistil_ray.export STUDENT_DIR --onnx [--int8]

STUDENT_DIR is a student a run or a sweep wrote (`runs/demo/en-zh/student`, `results/demo/students/<trial>`).
Writes `STUDENT_DIR/onnx/model.onnx` (float32) and, with `--int8`, `model_quantized.onnx` (int8
weights, dynamically quantised activations: for CPUs), next to the student's tokenizer. Exit status
2 for invalid input (not a student directory, nothing asked).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bistil_ray.console import console, quiet_libraries
from bistil_ray.errors import UserInputError, exit_on_user_error
from bistil_ray.output_paths import check_output_folder

PROGRAM = "bistil_ray.export"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {PROGRAM}", description=__doc__.splitlines()[0])
    parser.add_argument("student_dir", type=Path, metavar="STUDENT_DIR", help="a student's Hugging Face model directory")
    parser.add_argument("--onnx", action="store_true", help="write the float32 ONNX graph")
    parser.add_argument("--int8", action="store_true", help="also write the int8 (dynamically quantised) graph")
    args = parser.parse_args(argv)
    with exit_on_user_error(PROGRAM):
        if not (args.onnx or args.int8):
            raise UserInputError("nothing to export: give --onnx (and --int8 for the quantised graph)")
        if not args.student_dir.is_dir():
            raise UserInputError(f"{args.student_dir}: no such directory")
        onnx_folder = args.student_dir / "onnx"  # method.onnx_export.ONNX_DIR, named here to check it before torch loads
        if onnx_folder.exists() and not onnx_folder.is_dir():
            raise UserInputError(f"{onnx_folder}: a file stands where the ONNX folder goes")
        check_output_folder(onnx_folder, "STUDENT_DIR")
        quiet_libraries()
        from bistil_ray.method.onnx_export import export_onnx  # torch and onnxruntime once the input is valid

        paths = export_onnx(args.student_dir, int8=args.int8)
    for kind, path in paths.items():
        console.print(f"{kind}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
