"""One error type for input a user can fix, and the CLI convention around it.

Anything the user can correct (a config field, a file, a teacher name, a language) raises
`UserInputError` with one line that names the field or file. Entry points wrap `main` in
`exit_on_user_error`, which prints that line and exits with status 2, with no traceback.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

USER_ERROR_EXIT = 2


class UserInputError(Exception):
    """Input the user can fix. The message is one line naming the field or file."""


@contextmanager
def exit_on_user_error(program: str) -> Iterator[None]:
    try:
        yield
    except UserInputError as error:
        message = " ".join(str(error).split())
        print(f"{program}: error: {message}", file=sys.stderr)
        raise SystemExit(USER_ERROR_EXIT) from None
