"""The serving application on 127.0.0.1 (a free port), built from a tiny finished sweep: real HTTP
requests in two languages, an unknown one and none, and bad requests the service survives."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

pytest.importorskip("ray.serve", reason="Ray Serve is part of ray[serve]")
from tiny_sweep_results import finished_sweep  # noqa: E402

from bistil_ray.method.predictor import Predictor  # noqa: E402
from bistil_ray.orchestration.serving import ServeSettings  # noqa: E402
from bistil_ray.serve import build_app  # noqa: E402

SENTENCES = {"de": ["the cat sat on a mat", "a dog ran fast"], "zh": ["o gato correu", "árvore casa tree"]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(port: int, data, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict", data=data if isinstance(data, bytes) else json.dumps(data).encode(),
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.mark.timeout(600)
def test_each_language_is_answered_by_its_student_and_others_by_the_teacher(tmp_path, cluster, monkeypatch):
    import ray
    from ray import serve

    paths = finished_sweep(tmp_path)
    monkeypatch.setenv("TINY_SERVE_TOKEN", "s3cret")
    settings = ServeSettings(results=str(paths.experiment), cpus_per_replica=0, max_texts=4, token_env="TINY_SERVE_TOKEN")
    port = free_port()
    ray.init(address=cluster.address, namespace="bistil_ray")
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(settings), name="bistil", route_prefix="/")

        for lang, texts in SENTENCES.items():
            status, answer = post(port, {"texts": texts, "lang": lang}, token="s3cret")
            assert status == 200 and answer["model"] == f"student {lang}1" and not answer["lang_detected"]
            offline = Predictor.load(paths.students / f"{lang}1", max_length=128)(texts)
            assert [p["label"] for p in answer["predictions"]] == [p.label for p in offline]
            assert [p["score"] for p in answer["predictions"]] == pytest.approx([p.score for p in offline], abs=1e-5)

        status, answer = post(port, {"text": "the cat sat on a mat", "lang": "fr"}, token="s3cret")
        assert status == 200 and answer["model"] == "teacher" and answer["lang"] == "fr"
        # No lang: identified from the text (English here, which no student covers).
        status, answer = post(port, {"text": "the dog ran to the house and sat on the mat"}, token="s3cret")
        assert status == 200 and answer["lang_detected"] and answer["lang"] == "en" and answer["model"] == "teacher"

        for data, status_expected in [
            ({"text": "", "lang": "de"}, 400),
            ({"text": "x" * 1_000_000, "lang": "de"}, 413),
            ({"text": ["not", "a", "string"]}, 400),
            ({"texts": ["a"] * 5, "lang": "de"}, 413),
            (b"{broken", 400),
        ]:
            status, answer = post(port, data, token="s3cret")
            assert status == status_expected and "\n" not in answer["error"]
        assert post(port, {"text": "the cat", "lang": "de"})[0] == 401  # no token
        assert post(port, {"text": "the cat", "lang": "de"}, token="wrong")[0] == 401
        # Still serving after every refusal.
        assert post(port, {"text": "the cat", "lang": "zh"}, token="s3cret")[1]["model"] == "student zh1"
    finally:
        serve.shutdown()
        ray.shutdown()
