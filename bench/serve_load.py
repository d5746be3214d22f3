"""Serving a finished sweep's students against serving its teacher for every language: one Ray Serve
application each, the same CPUs, the same closed loop of clients, measured in one run.

The students' application has a deployment per target language (one replica each); the teacher's
application has one deployment for every language, with as many replicas, so both hold the same
CPUs (`--cpus-per-replica`, one thread each by default). Each client sends one target-language text
at a time from a fixed mix (the pairs' test texts, cycled, so lengths vary as the task's do) and
sends the next when the answer arrives. Per application: requests per second, p50 and p99 latency,
the replicas' resident memory, and each answer's label against the same model's offline prediction
for the same text. Then, in the students' application, one replica process is killed midway through
a run: Serve starts another, and the answers lost are counted (only requests in flight may be).

Two more applications measure what serving costs around the models, on the same machine and clients:
the same router in front of language deployments that answer without a model, and the ingress alone
answering every request (no router hop). Their requests/s bound what any model could reach here: the
ceiling of serve_throughput_vs_teacher on this machine is theirs divided by the teacher's.

    .venv/bin/python -m bench.serve_load results/demo [--clients 8] [--seconds 60] [--onnx]
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from bench.common import arguments, at_least, machine, markdown_table, merge_summary, write_report
from bistil_ray.data.tasks import load_task
from bistil_ray.method.predictor import Prediction, Predictor
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.serving import BadRequest, Router, ServeSettings, parse_query
from bistil_ray.serve import build_app, chosen_models
from bistil_ray.orchestration.sweep_config import SweepConfig


@serve.deployment
class NoModel:
    """A language's deployment that answers at once: the router, the handle call and the batching of a
    real one, without its model."""

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def predict(self, items: list[str | list[str]]) -> list[Prediction]:
        return [Prediction(label="", score=1.0) for _ in items]


@serve.deployment
class NoModelIngress:
    """The ingress answering each request itself: Serve's HTTP proxy and one replica, nothing else."""

    def __init__(self, kind: str, settings: ServeSettings):
        self.kind, self.settings = kind, settings

    async def __call__(self, request: Request) -> JSONResponse:
        try:
            query = parse_query(await request.body(), self.kind, self.settings)
        except BadRequest as error:
            return JSONResponse({"error": error.message}, status_code=error.status)
        return JSONResponse({"predictions": [{"label": "", "score": 1.0} for _ in query.items]})


def without_models(settings: ServeSettings, langs: list[str], kind: str, router: bool) -> serve.Application:
    """The serving application's shape with nothing to compute: with its router, or the ingress alone."""
    if not router:
        return NoModelIngress.options(ray_actor_options={"num_cpus": settings.cpus_per_replica}).bind(kind, settings)
    handles = {lang: NoModel.options(name=f"model-{lang}", ray_actor_options={"num_cpus": settings.cpus_per_replica}).bind()
               for lang in langs}
    return Router.options(ray_actor_options={"num_cpus": 0}).bind(handles, {lang: "no model" for lang in langs}, kind, settings, None)


@dataclass
class Load:
    """What the clients of one run saw."""

    latencies_s: list[float] = field(default_factory=list)
    answers: list[tuple[str, str, str]] = field(default_factory=list)  # (lang, text, label)
    failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def request_mix(results: Path, per_lang: int) -> list[tuple[str, str]]:
    """(lang, text) pairs: each target language's first `per_lang` test texts, interleaved."""
    sweep = SweepConfig.model_validate_json(SweepPaths(results.parent, results.name).config_snapshot.read_text())
    task = load_task(sweep.task, sweep.source_lang, sweep.target_langs)
    columns = {lang: task.target_test[lang][task.text_fields[0]][:per_lang] for lang in sweep.target_langs}
    return [(lang, columns[lang][index]) for index in range(per_lang) for lang in columns if index < len(columns[lang])]


def drive(port: int, mix: list[tuple[str, str]], clients: int, seconds: float, on_half: Any = None) -> tuple[Load, float]:
    """A closed loop of `clients` for `seconds`; `on_half()` runs once, halfway."""
    load, stop_at = Load(), time.monotonic() + seconds

    def client(offset: int) -> None:
        index = offset
        while time.monotonic() < stop_at:
            lang, text = mix[index % len(mix)]
            index += clients
            started = time.perf_counter()
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/predict", data=json.dumps({"text": text, "lang": lang}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=60) as answer:
                    label = json.load(answer)["predictions"][0]["label"]
            except (urllib.error.URLError, OSError, KeyError, ValueError):
                with load.lock:
                    load.failures += 1
                continue
            with load.lock:
                load.latencies_s.append(time.perf_counter() - started)
                load.answers.append((lang, text, label))

    threads = [threading.Thread(target=client, args=(offset,)) for offset in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    if on_half is not None:
        time.sleep(seconds / 2)
        on_half()
    for thread in threads:
        thread.join()
    return load, time.monotonic() - started


def replica_pids(application: str) -> dict[str, list[int]]:
    """Deployment name -> the pids of its replicas."""
    from ray.util.state import list_actors

    pids: dict[str, list[int]] = {}
    for actor in list_actors(filters=[("state", "=", "ALIVE")], limit=10_000):
        prefix = f"ServeReplica:{application}:"
        if actor.class_name.startswith(prefix):
            pids.setdefault(actor.class_name[len(prefix):], []).append(actor.pid)
    return pids


def resident_mib(pids: list[int]) -> float:
    import psutil

    return sum(psutil.Process(pid).memory_info().rss for pid in pids) / 2**20


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], repeated=False)
    parser.add_argument("results", type=Path, help="a finished sweep's folder (results/demo)")
    parser.add_argument("--clients", type=at_least(1), default=8)
    parser.add_argument("--seconds", type=at_least(5), default=60)
    parser.add_argument("--texts-per-lang", type=at_least(1), default=200)
    parser.add_argument("--cpus-per-replica", type=float, default=1.0)
    parser.add_argument("--onnx", action="store_true", help="the students' int8 ONNX graphs where exported")
    parser.add_argument("--pick", default="best", help="which student of each pair, as bistil_ray.serve's --pick")
    parser.add_argument("--report", default="serve", help="the report's name; `serve` also sets serve_throughput_vs_teacher")
    args = parser.parse_args()

    import ray

    results = args.results.resolve()
    mix = request_mix(results, args.texts_per_lang)
    base = ServeSettings(results=str(results), pick=args.pick, cpus_per_replica=args.cpus_per_replica, max_texts=1)
    served = chosen_models(base)
    langs = sorted(served.students)
    variants = {
        "students": base.model_copy(update={"onnx": args.onnx, "teacher": False}),
        "teacher": base.model_copy(update={"students": False, "replicas": len(langs)}),
    }
    # Each model's offline label for each text of the mix (one batch per language; the teacher loaded once).
    texts = {lang: [text for text_lang, text in mix if text_lang == lang] for lang in langs}
    teacher = Predictor.load(served.teacher.path, max_length=served.max_length)
    predictors = {
        "students": {lang: Predictor.load(served.students[lang].path, max_length=served.max_length, onnx=args.onnx)
                     for lang in langs},
        "teacher": {lang: teacher for lang in langs},
    }
    expected = {
        name: {(lang, text): prediction.label for lang in langs
               for text, prediction in zip(texts[lang], predictors[name][lang](texts[lang]))}
        for name in variants
    }
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray.init(address="local", log_to_driver=False)  # the dashboard serves the state API (replica pids)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    applications = {
        **{name: build_app(settings) for name, settings in variants.items()},
        "no model, router": without_models(base, langs, served.kind, router=True),
        "no model, ingress only": without_models(base, langs, served.kind, router=False),
    }
    measured: dict[str, dict[str, Any]] = {}
    try:
        for name, app in applications.items():
            serve.run(app, name=name, route_prefix="/")
            drive(port, mix, args.clients, 5)  # warm-up: first batches, lazy initialisation
            load, wall = drive(port, mix, args.clients, args.seconds)
            pids = [pid for deployment, found in replica_pids(name).items() if deployment.startswith("model-") for pid in found]
            agree = sum(label == expected[name][(lang, text)] for lang, text, label in load.answers) if name in expected else None
            measured[name] = {
                "requests": len(load.latencies_s),
                "failures": load.failures,
                "throughput_rps": len(load.latencies_s) / wall,
                "p50_ms": 1000 * percentile(load.latencies_s, 50),
                "p99_ms": 1000 * percentile(load.latencies_s, 99),
                "replica_memory_mib": resident_mib(pids),
                "replicas": len(pids),
                "agreement": None if agree is None else agree / max(len(load.answers), 1),
            }
            serve.delete(name)

        # A replica killed midway: Serve replaces it; only the requests in flight to it may be lost.
        serve.run(build_app(variants["students"]), name="students", route_prefix="/")
        drive(port, mix, args.clients, 5)
        victim = replica_pids("students")[f"model-{langs[0]}"][0]
        load, wall = drive(port, mix, args.clients, args.seconds, on_half=lambda: os.kill(victim, signal.SIGKILL))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not replica_pids("students").get(f"model-{langs[0]}"):
            time.sleep(1)
        replaced = bool(replica_pids("students").get(f"model-{langs[0]}"))
        kill = {"answered": len(load.latencies_s), "lost": load.failures, "clients": args.clients, "replaced": replaced}
    finally:
        serve.shutdown()
        ray.shutdown()

    ratio = measured["students"]["throughput_rps"] / measured["teacher"]["throughput_rps"]
    ceiling = measured["no model, router"]["throughput_rps"] / measured["teacher"]["throughput_rps"]
    record = {"machine": machine(), "languages": langs, "clients": args.clients, "seconds": args.seconds,
              "cpus_per_replica": args.cpus_per_replica, "onnx": args.onnx, "pick": args.pick,
              "students": {lang: served.students[lang].answered_by for lang in langs}, "applications": measured,
              "killed_replica": kill, "serve_throughput_vs_teacher": ratio,
              "ceiling_vs_teacher": ceiling}
    rows = [[name, f"{m['throughput_rps']:.1f}", f"{m['p50_ms']:.0f}", f"{m['p99_ms']:.0f}", f"{m['replica_memory_mib']:.0f}",
             f"{m['replicas']}", "-" if m["agreement"] is None else f"{m['agreement']:.2%}", f"{m['failures']}"] for name, m in measured.items()]
    write_report(args.out, args.report, record, f"""# Serving the students against serving the teacher

`{results}`: languages {', '.join(langs)}; {args.clients} clients in a closed loop for {args.seconds} s per
application, one text per request, {args.cpus_per_replica:g} CPU per replica ({len(langs)} replicas in each
application); students picked by `{args.pick}` ({', '.join(f"{lang}: {served.students[lang].answered_by}" for lang in langs)}){'; as int8 ONNX' if args.onnx else ''}.

{markdown_table(["application", "requests/s", "p50 ms", "p99 ms", "replica memory MiB", "replicas", "labels as offline", "failed requests"], rows)}

**serve_throughput_vs_teacher** = {ratio:.2f}

Without models, the same application answers {measured['no model, router']['throughput_rps']:.1f} requests/s
({measured['no model, ingress only']['throughput_rps']:.1f} with the ingress alone, no router hop): the most
any students could reach with these clients on this machine, {ceiling:.2f}x the teacher's application.

A replica of `model-{langs[0]}` killed halfway through a {args.seconds} s run: {kill['answered']} requests answered,
{kill['lost']} lost ({args.clients} clients, so at most {args.clients} could be in flight); replaced by Serve: {kill['replaced']}.
""")
    if args.report == "serve":
        merge_summary(args.out, {"serve_throughput_vs_teacher": ratio}, "bench.serve_load")
    print((args.out / f"{args.report}.md").read_text())


if __name__ == "__main__":
    main()
