"""What a training phase pays for running on Ray (one worker) instead of in this process.

The step is the phase-1 step of the step graph (`steps.PHASE1_STUDENT` as a `StepCall`: read the inputs, trim
the teacher, build the student, train with evaluations and checkpoints, save), run alternately
  - in process, with LocalHooks checkpointing to a local folder (what `bistil_ray.run` does),
  - through `train_runner.train_in_task`: a Ray task (what a sweep trial's one-worker phase does), and
  - through `train_runner.train_data_parallel` on a 1-worker TorchTrainer (what a phase of several
    workers pays per `fit`, measured here on one).
Ray starts once, outside the timings, the way the sweep driver starts it (a sweep pays that once,
not per phase); its start-up time is reported on its own.

    ray_fixed_cost_s       = median wall time in a Ray task - median wall time in process
    ray_train_fixed_cost_s = median wall time under Ray Train - median wall time in process

Each Ray time is split with timestamps the step writes as it starts and ends: start-up, the step
itself (which also pays for reports and checkpoint copies) and shut-down. An empty step under each
gives its floor on this machine: a Ray Train `fit` starts a controller, a worker, a synchronisation
actor, a placement-group cleaner, a preemption watcher and a dataset manager, each a new Python
process; a task runs in a worker process Ray keeps and reuses. What a phase pays above its floor
is its own start: importing torch, transformers and the package in a fresh process, loading its
inputs, first-use costs.

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
from typing import Any, Callable

import ray
import torch
import transformers

from bench.common import at_least, alternating, arguments, machine, markdown_table, median, merge_summary, timed, write_report
from bench.fixtures import demo_sweep, load_bench_data
from bench.stamped_steps import STAMPS, empty_step, stamped_step
from bistil_ray import pipeline
from bistil_ray.method.hooks import LocalHooks
from bistil_ray.orchestration.driver import start_ray
from bistil_ray.orchestration.requests import TrainRequest, TrainStep, WorkerGroup
from bistil_ray.orchestration.train_runner import ray_train_env_vars, train_data_parallel, train_in_task
from bistil_ray.steps import PHASE1_STUDENT, StepCall


RAY_RUNNERS = {"task": train_in_task, "ray_train": train_data_parallel}


class Bench:
    def __init__(self, step: TrainStep, group: WorkerGroup, work_dir: Path):
        self.step = partial(stamped_step, step)
        self.group = group
        self.work_dir = work_dir
        self.parts: dict[str, list[dict[str, float]]] = {}

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

    def variants(self) -> dict[str, Callable[[], float]]:
        variants: dict[str, Callable[[], float]] = {"in_process": self.in_process}
        for runner in RAY_RUNNERS:
            variants[runner] = partial(self.on_ray, runner, self.step, runner)
            variants[f"{runner}_empty"] = partial(self.on_ray, runner, partial(stamped_step, empty_step), f"{runner}_empty")
        return variants

    def on_ray(self, runner: str, step: TrainStep, variant: str) -> float:
        out_dir = self.fresh_dir("out")
        called = time.time()
        _, seconds = timed(
            lambda: RAY_RUNNERS[runner](TrainRequest(step, out_dir, self.fresh_dir("checkpoints"), "bench", self.group))
        )
        stamps = json.loads((out_dir / STAMPS).read_text())
        self.parts.setdefault(variant, []).append(
            {
                "start_s": stamps["entered"] - called,
                "step_s": stamps["exited"] - stamps["entered"],
                "finish_s": called + seconds - stamps["exited"],
            }
        )
        shutil.rmtree(out_dir)
        return seconds


LABELS = {
    "task": "Ray task",
    "task_empty": "Ray task, empty step",
    "ray_train": "Ray Train, 1 worker",
    "ray_train_empty": "Ray Train, 1 worker, empty step",
}


def markdown(record: dict[str, Any]) -> str:
    parts = record["parts_median"]
    rows = [["in process", record["seconds_median"]["in_process"], "", "", ""]] + [
        [label, record["seconds_median"][variant], parts[variant]["start_s"], parts[variant]["step_s"], parts[variant]["finish_s"]]
        for variant, label in LABELS.items()
    ]
    settings, median_of = record["settings"], record["seconds_median"]
    return (
        "# Ray's fixed cost per training phase\n\n"
        f"The sweep's phase-1 step ({settings['steps']} steps, evaluation and checkpoint every "
        f"{settings['eval_every']}; {settings['threads']} threads in process, as many CPUs for the worker), "
        f"medians of {settings['repeats']} alternating runs (seconds).\n\n"
        + markdown_table(["run", "wall", "start-up", "step", "shut-down"], rows)
        + f"\n**ray_fixed_cost_s** = {record['ray_fixed_cost_s']:.2f} s per one-worker phase (a Ray task; its empty "
        f"step: {median_of['task_empty']:.2f} s; the first task of the run, in a new worker process, started in "
        f"{record['parts']['task'][0]['start_s']:.2f} s: its imports, paid once per worker process). A phase under Ray Train, as a phase of several workers runs, pays "
        f"**ray_train_fixed_cost_s** = {record['ray_train_fixed_cost_s']:.2f} s, of which Ray Train's own floor (the "
        f"empty step) is {median_of['ray_train_empty']:.2f} s. `ray.init` (once per sweep) took "
        f"{record['ray_init_s']:.2f} s. Ray Train settings: "
        + ", ".join(f"`{name}={value}`" for name, value in record["ray_train_env"].items())
        + "\n"
    )


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=at_least(1), default=24, help="phase-1 steps of each run")
    parser.add_argument("--eval-every", type=at_least(1), default=12, help="steps between evaluations (and reports)")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()

    sweep = demo_sweep()
    target = sweep.target_langs[0]
    phase1 = sweep.phase1.model_copy(update={"steps": args.steps, "eval_every": args.eval_every})
    run = sweep.run_config(target, {}).model_copy(update={"phase1": phase1})
    work_dir = Path(tempfile.mkdtemp(prefix="bistil-bench-ray-"))
    data = load_bench_data(target, work_dir)
    # The same work on both sides: the worker holds as many CPUs as this process trains on threads
    # (a worker trains on as many threads as it holds CPUs), whatever the demo's per-trial share is.
    group = replace(WorkerGroup.from_resources(sweep.resources), cpus_per_worker=torch.get_num_threads())
    bench = Bench(StepCall(pipeline, PHASE1_STUDENT, run, {"vocabulary": data.vocab_dir}), group, work_dir)

    _, ray_init_s = timed(lambda: start_ray(sweep.resources, None, "127.0.0.1"))
    try:
        bench.in_process()  # untimed warm-up: this process's first phase pays one-off set-up costs
        seconds = alternating(bench.variants(), args.repeats)
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
        "seconds": seconds,
        "seconds_median": {variant: median(values) for variant, values in seconds.items()},
        "parts": bench.parts,
        "parts_median": {
            variant: {name: median([part[name] for part in parts]) for name in parts[0]} for variant, parts in bench.parts.items()
        },
    }
    in_process = record["seconds_median"]["in_process"]
    record["ray_fixed_cost_s"] = record["seconds_median"]["task"] - in_process
    record["ray_train_fixed_cost_s"] = record["seconds_median"]["ray_train"] - in_process
    write_report(args.out, "ray_fixed_cost", record, markdown(record))
    merge_summary(
        args.out,
        {
            "ray_fixed_cost_s": record["ray_fixed_cost_s"],
            "ray_train_fixed_cost_s": record["ray_train_fixed_cost_s"],
            "ray_train_floor_s": record["seconds_median"]["ray_train_empty"],
            "ray_init_s": ray_init_s,
        },
        "bench.ray_fixed_cost",
    )
    print(markdown(record))


if __name__ == "__main__":
    main()
