"""One language pair, end to end, in one process (no Ray).

    python -m bistil_ray.run CONFIG.yaml [--storage DIR] [--set phase1.steps=500 ...]

Executes the step graph of `bistil_ray.steps` here: the task teacher, the bilingual vocabulary and
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
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from bistil_ray.artifacts import ArtifactStore, artifact_key, storage_root, store_under
from bistil_ray.atomic import atomic_directory, atomic_write_text, remove_dead_staging
from bistil_ray.config import RunConfig, load_config
from bistil_ray.console import console, quiet_libraries
from bistil_ray.errors import exit_on_user_error
from bistil_ray.method.hooks import LocalHooks
from bistil_ray.model_card import write_model_card
from bistil_ray.steps import PHASE2_STUDENT, SHARED_STEPS, STEPS, Fingerprints, Pipeline, Step, step_inputs

if TYPE_CHECKING:
    from bistil_ray.pipeline import Inputs

STEP_RECORD = "bistil_step.json"  # beside the pair's student: the key it was built under, its metrics


def log(message: str) -> None:
    console.log(message)


@dataclass
class LocalGraph:
    """The step graph of one run, executed in this process."""

    pipeline: Pipeline
    inputs: Inputs
    prints: Fingerprints
    store: ArtifactStore
    keys: dict[str, str] = field(default_factory=dict)  # kind -> key of each step built so far
    paths: dict[str, Path] = field(default_factory=dict)  # kind -> its directory
    metrics: dict[str, dict] = field(default_factory=dict)  # kind -> what its build measured

    def key_inputs(self, step: Step) -> dict:
        return step_inputs(step, self.inputs.run, self.prints, self.keys)

    def build(self, step: Step, out_dir: Path, checkpoint: Path | None) -> dict:
        upstream = {kind: self.paths[kind] for kind in step.upstream}
        return step.build(self.pipeline, self.inputs, upstream, out_dir, LocalHooks(checkpoint))

    def shared(self, step: Step) -> dict:
        """`step`'s artifact, built here unless the store has it; resumes from its local checkpoint."""
        key_inputs = self.key_inputs(step)
        checkpoint = self.store.local_checkpoint(step.kind, artifact_key(key_inputs)) if step.trains else None
        artifact = self.store.get_or_build(step.kind, key_inputs, lambda out: self.build(step, out, checkpoint))
        if checkpoint is not None:
            shutil.rmtree(checkpoint, ignore_errors=True)
        self.keys[step.kind], self.paths[step.kind], self.metrics[step.kind] = artifact.key, artifact.path, artifact.metrics
        if artifact.cache_hit:
            log(f"{step.kind}: reusing {artifact.path}")
        else:
            log(f"{step.kind}: built {artifact.path} in {artifact.build_seconds:.0f}s")
        return {**artifact.metrics, "seconds": artifact.build_seconds, "cache_hit": artifact.cache_hit}

    def student(self, final: Path) -> dict:
        """The pair's phase-2 student at `final`: reused if built under the same key, else (re)built."""
        key = artifact_key(self.key_inputs(PHASE2_STUDENT))
        record = final / STEP_RECORD
        if record.exists():
            published = json.loads(record.read_text())
            if published["key"] == key:
                log(f"phase2_student: reusing {final}")
                return {**published["metrics"], "cache_hit": True}
            shutil.rmtree(final)  # built from other settings or inputs: this run's student replaces it
        remove_dead_staging(final)
        checkpoint = final.parent / ".checkpoints" / f"phase2_student-{key}"
        started = time.perf_counter()
        with atomic_directory(final) as staging:
            metrics = {**self.build(PHASE2_STUDENT, staging, checkpoint), "seconds": time.perf_counter() - started}
            (staging / STEP_RECORD).write_text(json.dumps({"key": key, "metrics": metrics}, indent=1, default=str))
        shutil.rmtree(checkpoint, ignore_errors=True)
        self.keys[PHASE2_STUDENT.kind], self.paths[PHASE2_STUDENT.kind] = key, final
        log(f"phase2_student: built {final} in {metrics['seconds']:.0f}s")
        return {**metrics, "cache_hit": False}


def run(config: RunConfig, storage: Path | None = None) -> dict:
    from bistil_ray import pipeline  # torch and transformers load only once the config is valid

    started = time.perf_counter()
    root = config.output_dir or Path("runs") / config.task.name
    out = root / f"{config.source_lang}-{config.target_lang}"
    inputs = pipeline.resolve_inputs(config)
    prints = Fingerprints.of(config, [config.target_lang])
    graph = LocalGraph(pipeline, inputs, prints, store_under(storage or root))
    log(
        f"{config.source_lang}-{config.target_lang}: {len(inputs.source_text)} / {len(inputs.target_text)} "
        f"phase-1 sentences, {len(inputs.task.source_train)} task examples, teacher {inputs.teacher_path}"
    )
    built = {step.kind: graph.shared(step) for step in SHARED_STEPS}
    phase2 = graph.student(out / "student")
    result = pipeline.evaluate_student(inputs, out / "student", graph.paths["task_teacher"], graph.metrics["teacher_scores"])
    result.update(
        source_lang=config.source_lang,
        target_lang=config.target_lang,
        teacher=config.teacher,
        task=config.task.name,
        vocab_size=built["vocabulary"]["vocab_size"],
        task_teacher_seconds=built["task_teacher"]["seconds"],
        phase1_seconds=built["phase1_student"]["seconds"],
        phase2_seconds=phase2["seconds"],
        phase1_tokens_per_s=built["phase1_student"].get("tokens_per_s"),
        phase1_mfu=built["phase1_student"].get("mfu"),
        run_seconds=time.perf_counter() - started,
        student_path=str(out / "student"),
        **{f"{STEPS[kind].column}_key": key for kind, key in graph.keys.items()},
    )
    write_model_card(out / "student", config, result)
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
    parser.add_argument(
        "--storage", help="where the shared steps' artifacts go; a sweep's --storage shares them (default: output_dir)"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    with exit_on_user_error("bistil_ray.run"):
        config = load_config(RunConfig, args.config, args.overrides)
        storage = storage_root(args.storage) if args.storage else None
        quiet_libraries()
        result = run(config, storage)
    console.print(result_table(result))
    console.print(f"student: {result['student_path']}  (result.json beside it)")


if __name__ == "__main__":
    main()
