"""What the serving application accepts and which models it serves, without Ray: each bad request
is a 4xx with one line naming the field, and `--pick` chooses each pair's student."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ray.serve", reason="Ray Serve is part of ray[serve]")
from tiny_sweep_results import TEACHER_KEY, finished_sweep  # noqa: E402

from bistil_ray.errors import UserInputError  # noqa: E402
from bistil_ray.orchestration.serving import BadRequest, ServeSettings, parse_query  # noqa: E402
from bistil_ray.serve import chosen_models  # noqa: E402

SETTINGS = ServeSettings(results="unused", max_texts=3, max_text_chars=50)


def body(data) -> bytes:
    return json.dumps(data).encode()


def test_good_requests_become_queries():
    assert parse_query(body({"text": "hallo welt", "lang": "de"}), "sequence", SETTINGS).items == ["hallo welt"]
    assert parse_query(body({"texts": ["a", "b"]}), "sequence", SETTINGS).lang is None
    assert parse_query(body({"text": "der Hund  lief"}), "token", SETTINGS).items == [["der", "Hund", "lief"]]
    assert parse_query(body({"tokens": ["der", "Hund"], "lang": "de"}), "token", SETTINGS).items == [["der", "Hund"]]


@pytest.mark.parametrize(
    ("data", "status", "says"),
    [
        (b"{not json", 400, "body: not JSON"),
        (b"\xff\xfe", 400, "body: not JSON"),
        (body(["a list"]), 400, "body: a JSON object"),
        (body({}), 400, "exactly one of text, texts, tokens"),
        (body({"text": "a", "texts": ["b"]}), 400, "exactly one of"),
        (body({"text": "a", "colour": "red"}), 400, "colour: unknown field"),
        (body({"text": ""}), 400, "text: empty"),
        (body({"text": "   "}), 400, "text: empty"),
        (body({"text": 7}), 400, "text: a string is expected"),
        (body({"text": None}), 400, "text: a string is expected"),
        (body({"text": "x" * 51}), 413, "text: 51 characters"),
        (body({"text": "x" * 1_000_000}), 413, "text: 1000000 characters"),
        (body({"texts": []}), 400, "texts: a non-empty list"),
        (body({"texts": "abc"}), 400, "texts: a non-empty list"),
        (body({"texts": ["a", 3]}), 400, "texts[1]: a string is expected"),
        (body({"texts": ["a"] * 4}), 413, "texts: 4 texts, more than the 3"),
        (body({"tokens": ["a"]}), 400, "tokens: this service classifies whole texts"),
        (body({"text": "a", "lang": 5}), 400, "lang: a language code"),
        (body({"text": "a", "lang": "../etc"}), 400, "lang: a language code"),
    ],
)
def test_each_bad_request_is_a_4xx_naming_its_field(data, status, says):
    with pytest.raises(BadRequest) as refused:
        parse_query(data, "sequence", SETTINGS)
    assert refused.value.status == status and says in refused.value.message and "\n" not in refused.value.message


@pytest.mark.parametrize("tokens", [[], "der Hund", ["der", ""], ["der", 3]])
def test_bad_tokens_of_a_token_task(tokens):
    with pytest.raises(BadRequest, match="tokens: a non-empty list of non-empty strings"):
        parse_query(body({"tokens": tokens}), "token", SETTINGS)


def test_pick_chooses_the_best_or_the_fastest_near_it_and_finds_the_teacher(tmp_path):
    paths = finished_sweep(tmp_path)
    best = chosen_models(ServeSettings(results=str(paths.experiment)))
    assert {lang: model.answered_by for lang, model in best.students.items()} == {"de": "student de1", "zh": "student zh1"}
    assert best.teacher.path.name == TEACHER_KEY and best.kind == "sequence"
    near = chosen_models(ServeSettings(results=str(paths.experiment), pick="pareto-fastest-within=0.01"))
    assert near.students["de"].answered_by == "student de2"  # 0.005 below the best, half its latency
    tight = chosen_models(ServeSettings(results=str(paths.experiment), pick="pareto-fastest-within=0.001"))
    assert tight.students["de"].answered_by == "student de1"


def test_a_missing_student_or_teacher_is_refused_before_anything_starts(tmp_path):
    import shutil

    paths = finished_sweep(tmp_path)
    shutil.rmtree(tmp_path / "artifacts")
    with pytest.raises(UserInputError, match="the task teacher is missing"):
        chosen_models(ServeSettings(results=str(paths.experiment)))
    assert chosen_models(ServeSettings(results=str(paths.experiment), teacher=False)).teacher is None
    shutil.rmtree(paths.students / "zh1")
    with pytest.raises(UserInputError, match="the student of en-zh is missing"):
        chosen_models(ServeSettings(results=str(paths.experiment), teacher=False))


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--port", "0"], "--port 0: a port number"),
        (["--port", "70000"], "--port 70000"),
        (["--pick", "fastest"], "--pick: 'fastest': best, or pareto-fastest-within=D"),
        (["--pick", "pareto-fastest-within=-1"], "--pick: 'pareto-fastest-within=-1': best, or"),
        (["--replicas", "0"], "--replicas: Input should be greater than or equal to 1"),
        (["--replicas", "3", "--max-replicas", "2"], "--max-replicas 2: below --replicas 3"),
        (["--teacher-only", "--no-teacher"], "--teacher-only: the teacher is all it serves"),
        (["--config-out", "/proc/bistil-serve.yaml"], "--config-out /proc/bistil-serve.yaml: cannot write in /proc"),
        (["--token-env", "BISTIL_TEST_UNSET_TOKEN"], "--token-env BISTIL_TEST_UNSET_TOKEN: that environment variable"),
    ],
)
def test_the_command_refuses_bad_flags_before_starting_anything(tmp_path, capsys, extra, says):
    from bistil_ray import serve

    paths = finished_sweep(tmp_path)
    capsys.readouterr()  # saving the tiny models' progress bars
    with pytest.raises(SystemExit) as exited:
        serve.main([str(paths.experiment), *extra])
    err = capsys.readouterr().err.strip()
    assert exited.value.code == 2 and says in err and "\n" not in err
    assert not (paths.experiment / "serve.yaml").exists()


def test_the_command_refuses_a_folder_that_is_not_a_finished_sweep(tmp_path, capsys):
    from bistil_ray import serve

    with pytest.raises(SystemExit) as exited:
        serve.main([str(tmp_path / "nothing")])
    assert exited.value.code == 2 and "no trials.parquet here" in capsys.readouterr().err


def test_the_serve_config_builds_the_same_application_from_its_args(tmp_path):
    import yaml

    from bistil_ray.serve import serve_config

    settings = ServeSettings(results=str(finished_sweep(tmp_path).experiment), pick="pareto-fastest-within=0.01")
    config = yaml.safe_load(serve_config(settings, "127.0.0.1", 8000))
    [application] = config["applications"]
    assert config["http_options"] == {"host": "127.0.0.1", "port": 8000}
    assert application["import_path"] == "bistil_ray.serve:build_app"
    assert ServeSettings.model_validate(application["args"]) == settings


def test_max_replicas_makes_each_language_autoscale():
    import tempfile
    from pathlib import Path

    from bistil_ray.serve import build_app

    with tempfile.TemporaryDirectory() as scratch:
        settings = ServeSettings(results=str(finished_sweep(Path(scratch)).experiment), replicas=1, max_replicas=4)
        router = build_app(settings)
    models = router._bound_deployment.init_args[0]
    for handle in models.values():
        config = handle._bound_deployment._deployment_config.autoscaling_config
        assert (config.min_replicas, config.max_replicas) == (1, 4)
