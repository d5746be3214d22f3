"""Serve what a sweep found: one Ray Serve application, a small student per language.

    python -m bistil_ray.serve SWEEP_RESULTS [--pick best|pareto-fastest-within=0.01] [--onnx]
                               [--no-teacher | --teacher-only] [--address auto]
                               [--host 127.0.0.1] [--port 8000] [--replicas N] [--max-replicas M]
                               [--cpus-per-replica C] [--max-batch-size N] [--batch-wait-ms MS]
                               [--token-env NAME] [--config-out PATH]

SWEEP_RESULTS is a sweep's folder under --storage (results/demo). The application answers
`POST /predict` on http://HOST:PORT until interrupted. It also writes a Serve config (`--config-out`,
default SWEEP_RESULTS/serve.yaml) with which `serve deploy` runs the same application on a cluster.
Exit status 2 for invalid input (nothing is started then).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import yaml

from bistil_ray.artifacts import store_under
from bistil_ray.atomic import atomic_write_text
from bistil_ray.console import console, quiet_libraries
from bistil_ray.errors import UserInputError, exit_on_user_error
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.serving import TEACHER, Served, ServedModel, ServeSettings, application
from bistil_ray.orchestration.sweep_config import SweepConfig
from bistil_ray.output_paths import check_output_file
from bistil_ray.reporting import open_results
from bistil_ray.steps import TASK_TEACHER

PROGRAM = "bistil_ray.serve"
APPLICATION = "bistil"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {PROGRAM}", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a sweep's folder under --storage")
    parser.add_argument("--pick", default="best", help="best, or pareto-fastest-within=D: the fastest student within D of the best")
    parser.add_argument("--onnx", action="store_true", help="each student's int8 ONNX graph where one was exported")
    parser.add_argument("--no-teacher", action="store_true", help="no fallback: a language no student covers is refused")
    parser.add_argument("--teacher-only", action="store_true", help="the teacher answers every language (for comparison)")
    parser.add_argument("--address", help="an existing Ray cluster (default: start a local one)")
    parser.add_argument("--host", default="127.0.0.1", help="where HTTP listens (default 127.0.0.1; 0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--replicas", type=int, default=1, help="replicas of each language's deployment")
    parser.add_argument("--max-replicas", type=int, help="autoscale each language from --replicas up to this many")
    parser.add_argument("--cpus-per-replica", type=float, default=1.0)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-wait-ms", type=float, default=10.0, help="how long a batch waits to fill")
    parser.add_argument("--token-env", metavar="NAME", help="require `Authorization: Bearer $NAME`")
    parser.add_argument("--verbose", action="store_true", help="also show Ray's own messages (else SWEEP_RESULTS/serve_ray.log)")
    parser.add_argument("--config-out", type=Path, help="the Serve config written (default SWEEP_RESULTS/serve.yaml)")
    return parser.parse_args(argv)


def chosen_models(settings: ServeSettings) -> Served:
    """Each pair's student by `settings.pick` (`best`: the best by the objective; `pareto-fastest-
    within=D`: of the pair's students within D of the best objective, the lowest trade-off, i.e.
    the fastest), and the task teacher; every path checked."""
    folder = Path(settings.results)
    results = open_results(str(folder))
    sweep = SweepConfig.model_validate_json(SweepPaths(folder.parent, folder.name).config_snapshot.read_text())
    if sweep.task.kind not in ("sequence", "token"):
        raise UserInputError(f"{folder}: a {sweep.task.kind} sweep; serving answers sequence and token classification")
    margin = float(settings.pick.split("=")[1]) if "=" in settings.pick else None
    students: dict[str, ServedModel] = {}
    teacher_key = None
    for target in sweep.target_langs:
        rows = [row for row in results.summary.to_pylist()
                if row["target_lang"] == target and row["status"] == "ok" and not row.get("student_removed")]
        best = next((row for row in rows if row["is_best"]), None)
        if best is None:
            continue
        chosen = best
        if margin is not None:
            near = [row for row in rows if row["objective_score"] >= best["objective_score"] - margin]
            chosen = min(near, key=lambda row: (row[results.tradeoff], -row["objective_score"]))
        path = Path(chosen["student_path"])
        if not (path / "config.json").is_file():
            raise UserInputError(f"{path}: the student of {sweep.source_lang}-{target} is missing")
        students[target] = ServedModel(path, f"student {chosen['trial_id']}")
        teacher_key = teacher_key or chosen["task_teacher_key"]
    if not students:
        raise UserInputError(f"{folder}: no pair has a finished student to serve")
    if not settings.students:
        students = {}
    teacher = None
    if settings.teacher or not settings.students:
        path = store_under(folder.parent).path(TASK_TEACHER.kind, teacher_key)
        if not (path / "config.json").is_file():
            raise UserInputError(f"{path}: the task teacher is missing (--no-teacher serves the students alone)")
        teacher = ServedModel(path, TEACHER)
    return Served(students, teacher, sweep.task.kind, sweep.phase2.max_length)


def build_app(settings: ServeSettings | dict[str, Any]) -> Any:
    """The application for `settings`; also the builder the Serve config names
    (`import_path: bistil_ray.serve:build_app`), so that `serve deploy` builds the same one."""
    settings = ServeSettings.model_validate(settings) if isinstance(settings, dict) else settings
    served = chosen_models(settings)
    token = None
    if settings.token_env is not None:
        token = os.environ.get(settings.token_env)
        if not token:
            raise UserInputError(f"--token-env {settings.token_env}: that environment variable is empty or unset")
    return application(settings, served, token)


def settings_of(args: argparse.Namespace) -> ServeSettings:
    from pydantic import ValidationError

    flags = {"pick": "--pick", "replicas": "--replicas", "max_replicas": "--max-replicas", "cpus_per_replica": "--cpus-per-replica",
             "max_batch_size": "--max-batch-size", "batch_wait_timeout_s": "--batch-wait-ms"}
    try:
        return ServeSettings(
            results=str(args.results.resolve()), pick=args.pick, onnx=args.onnx, teacher=not args.no_teacher,
            students=not args.teacher_only,
            replicas=args.replicas, max_replicas=args.max_replicas, cpus_per_replica=args.cpus_per_replica, max_batch_size=args.max_batch_size,
            batch_wait_timeout_s=args.batch_wait_ms / 1000, token_env=args.token_env,
        )
    except ValidationError as error:
        problem = error.errors()[0]
        raise UserInputError(f"{flags.get(str(problem['loc'][0]), problem['loc'][0])}: {problem['msg'].removeprefix('Value error, ')}") from None


def serve_config(settings: ServeSettings, host: str, port: int) -> str:
    """A Serve config (what `serve build` writes) for `serve deploy`: the same application, built by
    the same builder from the same settings."""
    config = {
        "proxy_location": "EveryNode",
        "http_options": {"host": host, "port": port},
        "applications": [{
            "name": APPLICATION,
            "route_prefix": "/",
            "import_path": "bistil_ray.serve:build_app",
            "args": settings.model_dump(),
        }],
    }
    return yaml.safe_dump(config, sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with exit_on_user_error(PROGRAM):
        quiet_libraries()
        if args.teacher_only and args.no_teacher:
            raise UserInputError("--teacher-only: the teacher is all it serves; leave out --no-teacher")
        if not 0 < args.port < 65536:
            raise UserInputError(f"--port {args.port}: a port number from 1 to 65535 is expected")
        settings = settings_of(args)
        config_out = args.config_out or args.results / "serve.yaml"
        check_output_file(config_out, "--config-out")
        from ray import serve

        app = build_app(settings)  # reads and checks the results, the students and the teacher
        atomic_write_text(config_out, serve_config(settings, args.host, args.port))
    import ray

    from bistil_ray.orchestration.driver import ray_messages_to

    log_file = args.results / "serve_ray.log"
    with ray_messages_to(log_file, verbose=args.verbose):
        ray.init(address=args.address, namespace="bistil_ray", log_to_driver=False)
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(app, name=APPLICATION, route_prefix="/")
        console.print(
            f"serving {args.results} on http://{args.host}:{args.port}/predict; Serve config: {config_out}; "
            f"Ray's own messages: {log_file}"
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            serve.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
