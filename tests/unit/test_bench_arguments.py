"""Every benchmark's whole-number flags (counts, step budgets, seeds) are bounded, and a value below
the bound or not a number stops it at argument parsing, before it trains or writes anything."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
COMMANDS = sorted(path.stem for path in BENCH.glob("*.py") if "\ndef main(" in path.read_text())


class Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


def parser_of(module: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser `bench.<module>.main` builds, taken at its parse_args call."""

    def capture(self, *args, **kwargs):
        raise Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    main = importlib.import_module(f"bench.{module}").main
    with pytest.raises(Captured) as captured:
        main() if main.__code__.co_argcount == 0 else main([])
    monkeypatch.undo()
    return captured.value.parser


def test_every_benchmark_is_found():
    assert {"claims", "text_curve", "trial_overhead", "tracking_overhead"} <= set(COMMANDS)


@pytest.mark.parametrize("module", COMMANDS)
def test_whole_number_flags_are_bounded_and_refused_below_their_bound(module, monkeypatch, capsys):
    parser = parser_of(module, monkeypatch)
    assert not [action.dest for action in parser._actions if action.type is int], "use bench.common.at_least"
    for action in (action for action in parser._actions if hasattr(action.type, "minimum")):
        flag = action.option_strings[0]
        for value in (str(action.type.minimum - 1), "many"):
            with pytest.raises(SystemExit) as exited:
                parser.parse_args([flag, value])
            assert exited.value.code == 2
            assert f"argument {flag}" in capsys.readouterr().err
