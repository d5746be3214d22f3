"""One language pair, end to end, in one process (no Ray).

    python -m bistil_ray.run CONFIG.yaml [--set phase1.steps=500 ...]

Builds the task teacher (`output_dir/task_teacher`, shared by every pair run into the same
`output_dir`), the bilingual vocabulary, the phase-1 student and the phase-2 student (under
`output_dir/<source>-<target>/`), evaluates, prints a result table and writes `result.json` beside them. Each step's directory is
published atomically; a rerun skips finished steps and resumes an interrupted one from its last
checkpoint.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Callable

from rich.table import Table

from bistil_ray.atomic import atomic_directory, atomic_write_text
from bistil_ray.config import RunConfig, load_config
from bistil_ray.console import console, quiet_libraries
from bistil_ray.errors import UserInputError, exit_on_user_error
from bistil_ray.method.hooks import LocalHooks


def log(message: str) -> None:
    console.log(message)


def run_step(name: str, final: Path, settings: dict, build: Callable[[Path, LocalHooks], dict], checkpoints: Path) -> dict:
    """Build `final` once: skip if published with the same settings, resume from its checkpoint
    if interrupted, refuse to mix settings in one output directory."""
    settings = json.loads(json.dumps(settings, default=lambda value: value.model_dump(mode="json")))
    record = final / "bistil_step.json"
    if record.exists():
        published = json.loads(record.read_text())
        if published["settings"] != settings:
            raise UserInputError(f"{final}: built with other settings; choose another output_dir")
        log(f"{name}: reusing {final}")
        return {**published["metrics"], "cache_hit": True}
    started = time.perf_counter()
    hooks = LocalHooks(checkpoint_dir=checkpoints / name)
    with atomic_directory(final) as staging:
        metrics = {**build(staging, hooks), "seconds": time.perf_counter() - started}
        (staging / "bistil_step.json").write_text(json.dumps({"settings": settings, "metrics": metrics}, indent=1, default=str))
    shutil.rmtree(checkpoints / name, ignore_errors=True)
    log(f"{name}: built {final} in {metrics['seconds']:.0f}s")
    return {**metrics, "cache_hit": False}


def run(config: RunConfig) -> dict:
    from bistil_ray import pipeline  # torch and transformers load only once the config is valid

    started = time.perf_counter()
    # The task teacher depends on the source side only: every pair run into one output_dir shares it.
    root = config.output_dir or Path("runs") / config.task.name
    out = root / f"{config.source_lang}-{config.target_lang}"
    checkpoints = out / ".checkpoints"
    inputs = pipeline.resolve_inputs(config)
    log(
        f"{config.source_lang}-{config.target_lang}: {len(inputs.source_text)} / {len(inputs.target_text)} "
        f"phase-1 sentences, {len(inputs.task.source_train)} task examples, teacher {inputs.teacher_path}"
    )
    teacher = run_step(
        "task_teacher",
        root / "task_teacher",
        {"teacher": config.teacher, "task": config.task, "source": config.source_lang, "config": config.task_teacher},
        lambda d, hooks: pipeline.build_task_teacher(inputs, config.task_teacher, d, hooks, log=log),
        root / ".checkpoints",
    )
    vocabulary = run_step(
        "vocabulary",
        out / "vocabulary",
        {"teacher": config.teacher, "pair": [config.source_lang, config.target_lang], "corpora": config.corpora, "config": config.vocabulary},
        lambda d, hooks: pipeline.build_vocabulary(inputs, config.vocabulary, d), checkpoints
    )
    phase1 = run_step(
        "phase1",
        out / "phase1_student",
        {"student": config.student, "config": config.phase1},
        lambda d, hooks: pipeline.build_phase1_student(
            inputs, out / "vocabulary", config.student, config.phase1, d, hooks, log=log
        ),
        checkpoints,
    )
    phase2 = run_step(
        "phase2",
        out / "student",
        {"config": config.phase2},
        lambda d, hooks: pipeline.run_phase2(
            inputs, out / "phase1_student", root / "task_teacher", out / "vocabulary", config.phase2, d, hooks, log=log
        ),
        checkpoints,
    )
    result = pipeline.evaluate_student(inputs, out / "student", root / "task_teacher")
    result.update(
        source_lang=config.source_lang,
        target_lang=config.target_lang,
        teacher=config.teacher,
        task=config.task.name,
        vocab_size=vocabulary["vocab_size"],
        task_teacher_seconds=teacher["seconds"],
        phase1_seconds=phase1["seconds"],
        phase2_seconds=phase2["seconds"],
        phase1_tokens_per_s=phase1.get("tokens_per_s"),
        phase1_mfu=phase1.get("mfu"),
        run_seconds=time.perf_counter() - started,
        student_path=str(out / "student"),
    )
    atomic_write_text(out / "result.json", json.dumps(result, indent=1, default=str))
    return result


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
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    with exit_on_user_error("bistil_ray.run"):
        config = load_config(RunConfig, args.config, args.overrides)
        quiet_libraries()
        result = run(config)
    console.print(result_table(result))
    console.print(f"student: {result['student_path']}  (result.json beside it)")


if __name__ == "__main__":
    main()
