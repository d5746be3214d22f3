"""`python -m bistil_ray.run` in a subprocess, and a tiny run of every phase on the offline teacher.

Import them by name: `from run_cli import E5_TINY_RUN, run_cli, write_config`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml


E5_TINY_RUN = {
    "teacher": "builtin:multilingual-e5-small",
    "task": {"builtin": "chatterbot"},
    "source_lang": "en",
    "target_lang": "zh",
    "task_teacher": {"steps": 3, "eval_every": 3, "batch_size": 8},
    "vocabulary": {"threshold": 1e-4},
    "student": {"layers": 2},
    "phase1": {"steps": 4, "eval_every": 2, "batch_size": 8, "validation_sentences": 16},
    "phase2": {"full_steps": 2, "sparse_steps": 2, "eval_every": 2, "batch_size": 8, "density": 0.1},
}


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bistil_ray.run", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def write_config(path: Path, settings: dict) -> Path:
    path.write_text(yaml.safe_dump(settings))
    return path
