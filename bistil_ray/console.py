"""Terminal output shared by the command-line entry points."""

from __future__ import annotations

import sys

from rich.console import Console

console = Console(log_path=False)


def line_buffered_output() -> None:
    """Each line of progress reaches a log as it is printed: Python buffers stdout in blocks when it
    is not a terminal (a cluster job's log, nohup, CI), where a phase's lines would appear only when
    several kilobytes had gathered, minutes later."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)  # absent where stdout is replaced (a test's capture)
    if reconfigure is not None:
        reconfigure(line_buffering=True)


def quiet_libraries() -> None:
    """Keep library chatter (weight-load reports, per-file progress bars) off the user's terminal;
    warnings and errors still show."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
