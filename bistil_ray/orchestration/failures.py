"""Which failures of a trial a retry can change, and which it cannot.

Tune's `FailureConfig(max_failures=...)` and Ray Train's worker restarts retry whatever failed. That is
right for a process that died (SIGKILL, the OOM killer, a lost node) or ran out of memory: the next
attempt may get a healthy worker or a free machine. It is waste for an error the trial's own code
raised from what it was given (a missing result key, an input found bad late, a shape mismatch): the
next attempt re-runs everything not yet published (phase 2, evaluation: hours on a GPU cluster) and
fails the same way. Such errors end the trial at once, with status `error` and the reason.

Anything not recognised as deterministic counts as retryable, as Ray would treat it: a wrong guess
that way costs a retry, the other way a lost trial.
"""

from __future__ import annotations

import re
from pathlib import Path

from ray.exceptions import RayError, RayTaskError

from bistil_ray.atomic import atomic_write_text
from bistil_ray.errors import UserInputError

# Raised by code on what it was given, the same way on every attempt.
DETERMINISTIC_ERRORS: tuple[type[BaseException], ...] = (
    UserInputError,
    LookupError,  # KeyError, IndexError
    ValueError,  # also JSON, Unicode and pyarrow's ArrowInvalid
    TypeError,
    AttributeError,
    NameError,
    AssertionError,
    NotImplementedError,
    ArithmeticError,
    ImportError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
)
# Tensor shape errors: PyTorch raises them as plain RuntimeErrors, told apart by their text only.
SHAPE_MISMATCH = re.compile(
    r"size mismatch|shapes cannot be multiplied|must match the size|shape '\[.*\]' is invalid|"
    r"expected .* to have .* channels|mat\d and mat\d",
    re.IGNORECASE,
)
# What a training step leaves in its output folder when it failed deterministically.
STEP_FAILED = ".bistil-step-failed"


class DeterministicFailure(Exception):
    """A step failed in a way that a restart cannot change; the message is its one-line reason."""


def cause_of(error: BaseException) -> BaseException:
    """The user code's exception inside Ray's wrapper of a failed task."""
    while isinstance(error, RayTaskError) and error.cause is not None:
        error = error.cause
    return error


def is_deterministic(error: BaseException) -> bool:
    error = cause_of(error)
    if isinstance(error, DeterministicFailure):
        return True
    if isinstance(error, (MemoryError, RayError)):  # out of memory, dead processes, lost nodes
        return False
    if isinstance(error, DETERMINISTIC_ERRORS):
        return True
    return type(error) is RuntimeError and bool(SHAPE_MISMATCH.search(str(error)))


def one_line(error: BaseException) -> str:
    """`Type: first line of the message`, at most 500 characters: the `error` column."""
    error = cause_of(error)
    if isinstance(error, (DeterministicFailure, UserInputError)):
        text = str(error)
    else:
        message = " ".join(str(error).split())
        text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return " ".join(text.split())[:500]


def record_step_failure(out_dir: Path, error: BaseException) -> None:
    """Leave the reason in the step's output folder (every worker of a run sees it)."""
    atomic_write_text(Path(out_dir) / STEP_FAILED, one_line(error))


def step_failure(out_dir: Path) -> str | None:
    """The reason an earlier attempt of this step left, if it failed deterministically."""
    marker = Path(out_dir) / STEP_FAILED
    return marker.read_text() if marker.exists() else None
