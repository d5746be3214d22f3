"""What a training phase pays for running under Ray Train (one worker) instead of in this process.

The step is the phase-1 step of the step graph (`steps.PHASE1_STUDENT` as a `StepCall`: read the inputs, trim
the teacher, build the student, train with evaluations and checkpoints, save), run alternately
  - in process, with LocalHooks checkpointing to a local folder (what `bistil_ray.run` does), and
  - through `train_runner.run_training` on a 1-worker TorchTrainer (what a sweep trial does).
Ray starts once, outside the timings, the way the sweep driver starts it (a sweep pays that once,
not per phase); its start-up time is reported on its own.

    ray_fixed_cost_s = median wall time under Ray - median wall time in process

The Ray time is split with timestamps the step writes as it starts and ends: start-up (controller,
worker group, worker process imports), the step itself (which also pays for reports and checkpoint
uploads), and shut-down. A third variant runs an empty step under Ray Train: Ray Train's own floor
on this machine (each `fit` starts a controller, a worker, a synchronisation actor, a placement-group
cleaner, a preemption watcher and a dataset manager, each a new Python process). What the phase pays
above that floor is its own start in a fresh process: importing torch, transformers and the package,
loading its inputs, first-use costs.

    .venv/bin/python -m bench.ray_fixed_cost [--steps 24] [--eval-every 12] [--repeats 3]
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import ray
import torch
import transformers

from bench.common import alternating, arguments, machine, markdown_table, median, merge_summary, timed, write_report
from bench.fixtures import demo_sweep, load_bench_data
from bench.stamped_steps import STAMPS, empty_step, stamped_step
from bistil_ray import pipeline
from bistil_ray.method.hooks import LocalHooks
from bistil_ray.orchestration.driver import start_ray
from bistil_ray.orchestration.train_runner import TrainStep, WorkerGroup, ray_train_env_vars, run_training
from bistil_ray.steps import PHASE1_STUDENT, StepCall


class Bench:
    def __init__(self, step: TrainStep, group: WorkerGroup, work_dir: Path):
        self.step = partial(stamped_step, step)
        self.group = group
        self.work_dir = work_dir
        self.ray_parts: list[dict[str, float]] = []
        self.empty_parts: list[dict[str, float]] = []

    def fresh_dir(self, name: str) -> Path:
        path = self.work_dir / f"{name}-{uuid.uuid4().hex[:8]}"
        path.mkdir()
        return path

    def in_process(self) -> float:
        out_dir, checkpoints = self.fresh_dir("out"), self.fresh_dir("checkpoint")
        _, seconds = timed(lambda: self.step(out_dir, LocalHooks(checkpoint_dir=checkpoints / "latest")))
        shutil.rmtree(out_dir)
        shutil.rmtree(checkpoints)
        return seconds

    def under_ray(self) -> float:
        return self._run_under_ray(self.step, self.ray_parts)

    def empty_under_ray(self) -> float:
        return self._run_under_ray(partial(stamped_step, empty_step), self.empty_parts)

    def _run_under_ray(self, step: TrainStep, parts: list[dict[str, float]]) -> float:
        out_dir = self.fresh_dir("out")
        called = time.time()
        _, seconds = timed(
            lambda: run_training(
                step, out_dir, name=f"bench-{uuid.uuid4().hex[:8]}", runs_dir=self.work_dir / "runs", group=self.group
            )
        )
        stamps = json.loads((out_dir / STAMPS).read_text())
        parts.append(
            {
                "start_s": stamps["entered"] - called,
                "step_s": stamps["exited"] - stamps["entered"],
                "finish_s": called + seconds - stamps["exited"],
            }
        )
        shutil.rmtree(out_dir)
        return seconds


def markdown(record: dict[str, Any]) -> str:
    parts, empty = record["ray_parts_median"], record["empty_parts_median"]
    rows = [
        ["in process", record["in_process_s"], "", "", ""],
        ["Ray Train, 1 worker", record["ray_s"], parts["start_s"], parts["step_s"], parts["finish_s"]],
        ["Ray Train, 1 worker, empty step", record["ray_empty_s"], empty["start_s"], empty["step_s"], empty["finish_s"]],
    ]
    settings = record["settings"]
    return (
        "# Ray Train's fixed cost per training phase\n\n"
        f"The sweep's phase-1 step ({settings['steps']} steps, evaluation and checkpoint every "
        f"{settings['eval_every']}; {settings['threads']} threads in process, as many CPUs for the worker), "
        f"medians of {settings['repeats']} alternating runs (seconds).\n\n"
        + markdown_table(["run", "wall", "start-up", "step", "shut-down"], rows)
        + f"\n**ray_fixed_cost_s** = {record['ray_fixed_cost_s']:.2f} s per phase, of which Ray Train's own floor "
        f"(the empty step) is {record['ray_empty_s']:.2f} s and the phase's start in a fresh process the other "
        f"{record['ray_fixed_cost_s'] - record['ray_empty_s']:.2f} s. `ray.init` (once per sweep) "
        f"took {record['ray_init_s']:.2f} s. Ray Train settings: "
        + ", ".join(f"`{name}={value}`" for name, value in record["ray_train_env"].items())
        + "\n"
    )


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24, help="phase-1 steps of each run")
    parser.add_argument("--eval-every", type=int, default=12, help="steps between evaluations (and reports)")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()

    sweep = demo_sweep()
    target = sweep.target_langs[0]
    phase1 = sweep.phase1.model_copy(update={"steps": args.steps, "eval_every": args.eval_every})
    run = sweep.run_config(target, {}).model_copy(update={"phase1": phase1})
    work_dir = Path(tempfile.mkdtemp(prefix="bistil-bench-ray-"))
    data = load_bench_data(target, work_dir)
    # The same work on both sides: the worker holds as many CPUs as this process trains on threads
    # (Ray sets a worker's thread count to its CPUs), whatever the demo's per-trial share is.
    group = replace(WorkerGroup.from_resources(sweep.resources), cpus_per_worker=torch.get_num_threads())
    bench = Bench(StepCall(pipeline, PHASE1_STUDENT, run, {"vocabulary": data.vocab_dir}), group, work_dir)

    _, ray_init_s = timed(lambda: start_ray(sweep.resources, None, "127.0.0.1"))
    try:
        bench.in_process()  # untimed warm-up: this process's first phase pays one-off set-up costs
        seconds = alternating(
            {"in_process": bench.in_process, "ray": bench.under_ray, "ray_empty": bench.empty_under_ray}, args.repeats
        )
    finally:
        ray.shutdown()
        shutil.rmtree(work_dir, ignore_errors=True)

    record = {
        "settings": {
            "repeats": args.repeats,
            "steps": args.steps,
            "eval_every": args.eval_every,
            "pair": f"{run.source_lang}-{target}",
            "threads": torch.get_num_threads(),
        },
        "machine": machine(),
        "ray_train_env": ray_train_env_vars(sweep.resources),
        "ray_init_s": ray_init_s,
        "in_process_seconds": seconds["in_process"],
        "ray_seconds": seconds["ray"],
        "ray_parts": bench.ray_parts,
        "ray_parts_median": {name: median([parts[name] for parts in bench.ray_parts]) for name in bench.ray_parts[0]},
        "ray_empty_seconds": seconds["ray_empty"],
        "empty_parts": bench.empty_parts,
        "empty_parts_median": {name: median([parts[name] for parts in bench.empty_parts]) for name in bench.empty_parts[0]},
        "in_process_s": median(seconds["in_process"]),
        "ray_s": median(seconds["ray"]),
        "ray_empty_s": median(seconds["ray_empty"]),
    }
    record["ray_fixed_cost_s"] = record["ray_s"] - record["in_process_s"]
    write_report(args.out, "ray_fixed_cost", record, markdown(record))
    merge_summary(
        args.out,
        {"ray_fixed_cost_s": record["ray_fixed_cost_s"], "ray_train_floor_s": record["ray_empty_s"], "ray_init_s": ray_init_s},
        "bench.ray_fixed_cost",
    )
    print(markdown(record))


if __name__ == "__main__":
    main()
