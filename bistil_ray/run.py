"""One language pair, end to end, in one process (no Ray).

    python -m bistil_ray.run CONFIG.yaml [--storage DIR] [--set phase1.steps=500 ...]

The step graph of `bistil_ray.steps`, executed here (`executor.LocalBackend`): the task teacher, the bilingual vocabulary and
the phase-1 student are artifacts in the store under `--storage` (default: `output_dir`), keyed by
content exactly as a sweep keys them, so a run and a sweep on one storage reuse each other's work
and an edited input file is rebuilt. The phase-2 student goes to `output_dir/<source>-<target>/student`,
then is evaluated; a result table is printed and `result.json` written beside it. Each directory is
published atomically; a rerun skips finished steps and resumes an interrupted one from its last
checkpoint; a rerun with other phase-2 settings replaces the pair's student.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.table import Table

from bistil_ray.artifacts import Artifact, storage_root, store_under
from bistil_ray.atomic import atomic_write_text
from bistil_ray.config import RunConfig, load_config
from bistil_ray.console import console, line_buffered_output, quiet_libraries
from bistil_ray.errors import exit_on_user_error
from bistil_ray.executor import LocalBackend, StepGraph
from bistil_ray.model_card import write_model_card
from bistil_ray.output_paths import check_output_folder
from bistil_ray.results_schema import schema_checked, step_columns
from bistil_ray.steps import PHASE2_STUDENT, SHARED_STEPS, STEPS, Fingerprints


def log(message: str) -> None:
    console.log(message)


def run(config: RunConfig, storage: Path | None = None) -> dict:
    from bistil_ray import pipeline  # torch and transformers load only once the config is valid

    started = time.perf_counter()
    root = output_root(config)
    out = root / f"{config.source_lang}-{config.target_lang}"
    inputs = pipeline.resolve_inputs(config)
    prints = Fingerprints.of(config, [config.target_lang])
    graph = StepGraph(pipeline, config, prints, store_under(storage or root), LocalBackend(inputs))
    log(
        f"{config.source_lang}-{config.target_lang}: {len(inputs.source_text)} / {len(inputs.target_text)} "
        f"phase-1 sentences, {len(inputs.task.source_train)} task examples, teacher {inputs.teacher_path}"
    )
    for step in SHARED_STEPS:
        logged(graph.shared(step))
    student = logged(graph.placed(PHASE2_STUDENT, out / "student"))
    result = pipeline.evaluate_student(inputs, student.path, graph.path("task_teacher"), graph.built["teacher_scores"].metrics)
    result.update(
        source_lang=config.source_lang,
        target_lang=config.target_lang,
        teacher=config.teacher,
        task=config.task.name,
        **{name: value for step in STEPS.values() for name, value in step_columns(step, graph.built[step.kind]).items()},
        trial_seconds=time.perf_counter() - started,
        student_path=str(student.path),
    )
    schema_checked(result)
    write_model_card(student.path, config, result)
    atomic_write_text(out / "result.json", json.dumps(result, indent=1, default=str))
    return result


def output_root(config: RunConfig) -> Path:
    return config.output_dir or Path("runs") / config.task.name


def logged(artifact: Artifact) -> Artifact:
    if artifact.cache_hit:
        log(f"{artifact.kind}: reusing {artifact.path}")
    else:
        log(f"{artifact.kind}: built {artifact.path} in {artifact.build_seconds:.0f}s")
    return artifact


def result_table(result: dict) -> Table:
    table = Table(title=f"BiStil {result['source_lang']}-{result['target_lang']} ({result['task']})")
    table.add_column("")
    table.add_column("task teacher", justify="right")
    table.add_column("student", justify="right")
    table.add_row("layers", "", str(result["student_layers"]))
    table.add_row("vocabulary", "", f"{result['vocab_size']:,}")
    table.add_row(f"source {result['metric']}", f"{result['teacher_source_score']:.3f}", f"{result['source_score']:.3f}")
    table.add_row(f"target {result['metric']}", f"{result['teacher_target_score']:.3f}", f"{result['target_score']:.3f}")
    table.add_row("retention", "", f"{result['retention']:.1%}")
    table.add_row("parameters", f"{result['teacher_params'] / 1e6:.2f}M", f"{result['student_params'] / 1e6:.2f}M")
    if "speedup" in result:
        table.add_row("latency, batch 1", f"{result['teacher_latency_ms']:.1f} ms", f"{result['student_latency_ms']:.1f} ms")
        table.add_row(
            "throughput, batch 32",
            f"{result['teacher_throughput']:.0f}/s",
            f"{result['student_throughput']:.0f}/s ({result['speedup']:.2f}x)",
        )
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bistil_ray.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="run YAML (see configs/)")
    parser.add_argument(
        "--storage", help="where the shared steps' artifacts go; a sweep's --storage shares them (default: output_dir)"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    line_buffered_output()
    with exit_on_user_error("bistil_ray.run"):
        config = load_config(RunConfig, args.config, args.overrides)
        storage = storage_root(args.storage) if args.storage else None
        check_output_folder(output_root(config), "output_dir")
        if storage is not None:
            check_output_folder(storage, "--storage")
        quiet_libraries()
        result = run(config, storage)
    console.print(result_table(result))
    console.print(f"student: {result['student_path']}  (result.json beside it)")


if __name__ == "__main__":
    main()
