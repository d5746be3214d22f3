"""Terminal output shared by the command-line entry points."""

from __future__ import annotations

from rich.console import Console

console = Console(log_path=False)


def quiet_libraries() -> None:
    """Keep library chatter (weight-load reports, per-file progress bars) off the user's terminal;
    warnings and errors still show."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
