"""One Ray Serve application for what a sweep found: a deployment per target language holding that
pair's chosen student, the task teacher as the fallback for other languages, and a router in front.

    POST /predict  {"text": "..."} | {"texts": ["...", ...]} | {"tokens": ["...", ...]}, optional "lang"

The request's `lang` picks the deployment; without one, a language-identification model (py3langid)
picks it, and the answer says so. Each language's deployment batches the requests that reach it
(`@serve.batch`). A Serve config names the application's builder, so that `serve deploy` runs the
same application on a cluster (the builder, which reads the sweep's tables,
is `bistil_ray.serve.build_app`).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import JSONResponse

from bistil_ray.errors import UserInputError
from bistil_ray.method.predictor import Prediction, Predictor

TEACHER = "teacher"


class ServeSettings(BaseModel):
    """What `python -m bistil_ray.serve` was asked for; the `args` of the Serve config it writes."""

    model_config = ConfigDict(extra="forbid")

    results: str = Field(description="the sweep's folder under --storage")
    pick: str = Field("best", description="best, or pareto-fastest-within=D")
    onnx: bool = Field(False, description="a student's int8 ONNX graph where one was exported")
    teacher: bool = Field(True, description="the task teacher answers languages no student covers")
    students: bool = Field(True, description="false: the teacher answers every language (what the students replace)")
    replicas: int = Field(1, ge=1, description="replicas of each language's deployment")
    max_replicas: int | None = Field(None, ge=1, description="set: Serve autoscales each language from replicas to this")
    cpus_per_replica: float = Field(1.0, ge=0)
    max_batch_size: int = Field(16, ge=1)
    batch_wait_timeout_s: float = Field(0.01, ge=0)
    max_texts: int = Field(64, ge=1, description="texts (or sentences) in one request")
    max_text_chars: int = Field(5000, ge=1, description="characters of one text")
    token_env: str | None = Field(None, description="the environment variable holding the bearer token")

    @field_validator("pick")
    @classmethod
    def _known_pick(cls, pick: str) -> str:
        if not re.fullmatch(r"best|pareto-fastest-within=\d*\.?\d+", pick):
            raise ValueError(f"{pick!r}: best, or pareto-fastest-within=D (the fastest student within D of the best score, such as 0.01)")
        return pick


@dataclass(frozen=True)
class ServedModel:
    path: Path
    answered_by: str  # what an answer says: "student <trial id>" or "teacher"


@dataclass(frozen=True)
class Served:
    """The models of the application, and what their requests look like."""

    students: dict[str, ServedModel]  # target language -> its student
    teacher: ServedModel | None
    kind: str  # "sequence" or "token"
    max_length: int


# --- requests ------------------------------------------------------------------------------------


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Query:
    items: list[str] | list[list[str]]  # texts, or sentences as words
    lang: str | None


def parse_query(body: bytes, kind: str, settings: ServeSettings) -> Query:
    """The request body as a query, or `BadRequest` with the field at fault."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(400, "body: not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest(400, "body: a JSON object is expected")
    unknown = sorted(set(data) - {"text", "texts", "tokens", "lang"})
    if unknown:
        raise BadRequest(400, f"{unknown[0]}: unknown field (known: text, texts, tokens, lang)")
    given = [field for field in ("text", "texts", "tokens") if field in data]
    if len(given) != 1:
        raise BadRequest(400, "give exactly one of text, texts, tokens")
    field, value = given[0], data[given[0]]
    if field == "texts":
        if not isinstance(value, list) or not value:
            raise BadRequest(400, "texts: a non-empty list of strings is expected")
        if len(value) > settings.max_texts:
            raise BadRequest(413, f"texts: {len(value)} texts, more than the {settings.max_texts} one request may hold")
        texts = [_text(f"texts[{index}]", text, settings) for index, text in enumerate(value)]
    elif field == "text":
        texts = [_text("text", value, settings)]
    else:
        if kind == "sequence":
            raise BadRequest(400, "tokens: this service classifies whole texts; send text or texts")
        if not isinstance(value, list) or not value or not all(isinstance(word, str) and word.strip() for word in value):
            raise BadRequest(400, "tokens: a non-empty list of non-empty strings is expected")
        _text("tokens", " ".join(value), settings)
        return Query([value], _lang(data))
    items = [text.split() for text in texts] if kind == "token" else texts
    return Query(items, _lang(data))


def _text(field: str, value: Any, settings: ServeSettings) -> str:
    if not isinstance(value, str):
        raise BadRequest(400, f"{field}: a string is expected")
    if not value.strip():
        raise BadRequest(400, f"{field}: empty")
    if len(value) > settings.max_text_chars:
        raise BadRequest(413, f"{field}: {len(value)} characters, more than the {settings.max_text_chars} allowed")
    return value


def _lang(data: dict[str, Any]) -> str | None:
    lang = data.get("lang")
    if lang is not None and not (isinstance(lang, str) and 2 <= len(lang) <= 12 and lang.replace("-", "").isalnum()):
        raise BadRequest(400, "lang: a language code such as 'de' is expected")
    return lang


def detect_language(items: list[str] | list[list[str]]) -> str:
    import py3langid

    text = " ".join(item if isinstance(item, str) else " ".join(item) for item in items)
    return py3langid.classify(text[:2000])[0]


# --- deployments ---------------------------------------------------------------------------------


@serve.deployment
class LanguageModel:
    """One model on its replica's CPUs, answering the requests that reach it in batches."""

    def __init__(self, path: str, max_length: int, onnx: bool, threads: int, max_batch_size: int, wait_s: float):
        torch.set_num_threads(threads)
        self.predictor = Predictor.load(Path(path), max_length=max_length, onnx=onnx)
        self.predict.set_max_batch_size(max_batch_size)
        self.predict.set_batch_wait_timeout_s(wait_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def predict(self, items: list[str | list[str]]) -> list[Prediction]:
        return self.predictor(items)


@serve.deployment
class Router:
    """POST /predict: checks the request, picks the language's deployment (or the teacher's) and
    answers with its predictions and which model gave them."""

    def __init__(self, models: dict[str, DeploymentHandle], answered_by: dict[str, str], kind: str,
                 settings: ServeSettings, token: str | None):
        self.models, self.answered_by, self.kind = models, answered_by, kind
        self.settings, self.token = settings, token
        # A body past this is refused unread: the largest request the limits allow, with room for JSON.
        self.max_body_bytes = 4 * settings.max_texts * settings.max_text_chars + 65536

    async def __call__(self, request: Request) -> JSONResponse:
        try:
            if request.url.path.rstrip("/") != "/predict":
                raise BadRequest(404, f"{request.url.path}: not found; POST /predict")
            if request.method != "POST":
                raise BadRequest(405, "/predict: POST a JSON body")
            if self.token is not None and request.headers.get("authorization") != f"Bearer {self.token}":
                raise BadRequest(401, "authorization: a valid bearer token is required")
            length = int(request.headers.get("content-length") or 0)
            if length > self.max_body_bytes:
                raise BadRequest(413, f"body: {length} bytes, more than the {self.max_body_bytes} allowed")
            query = parse_query(await request.body(), self.kind, self.settings)
            lang, detected = (query.lang, False) if query.lang else (detect_language(query.items), True)
            name = lang if lang in self.models else TEACHER
            if name not in self.models:
                raise BadRequest(422, f"lang {lang!r}: no student serves it and there is no teacher to fall back on")
        except BadRequest as error:
            return JSONResponse({"error": error.message}, status_code=error.status)
        predictions = await asyncio.gather(*(self.models[name].predict.remote(item) for item in query.items))
        return JSONResponse({
            "lang": lang,
            "lang_detected": detected,
            "model": self.answered_by[name],
            "predictions": [{"label": prediction.label, "score": prediction.score} for prediction in predictions],
        })


def application(settings: ServeSettings, served: Served, token: str | None) -> serve.Application:
    """The application serving `served`: a deployment per model, the router in front."""
    models = {**served.students, **({TEACHER: served.teacher} if served.teacher else {})}
    threads = max(1, int(settings.cpus_per_replica))
    if settings.max_replicas is not None and settings.max_replicas < settings.replicas:
        raise UserInputError(f"--max-replicas {settings.max_replicas}: below --replicas {settings.replicas}")
    scaling: dict[str, Any] = (
        {"num_replicas": settings.replicas}
        if settings.max_replicas is None
        else {"autoscaling_config": {"min_replicas": settings.replicas, "max_replicas": settings.max_replicas}}
    )
    handles = {
        name: LanguageModel.options(
            name=f"model-{name}", ray_actor_options={"num_cpus": settings.cpus_per_replica}, **scaling
        ).bind(str(model.path), served.max_length, settings.onnx, threads, settings.max_batch_size, settings.batch_wait_timeout_s)
        for name, model in models.items()
    }
    answered_by = {name: model.answered_by for name, model in models.items()}
    return Router.options(ray_actor_options={"num_cpus": 0}).bind(handles, answered_by, served.kind, settings, token)
