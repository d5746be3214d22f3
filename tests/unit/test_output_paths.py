"""Every command's output paths are checked before its work starts, as a class: for each command
and each output it writes, each kind of place that cannot take it (a file where a folder goes, a
file where one of its folders goes, a folder where a file goes, a virtual filesystem) gives exit
status 2 and one line naming the flag or setting, and nothing is written."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import yaml

from bench import claims
from bistil_ray import export, results, run, sweep

UNWRITABLE = Path("/proc/bistil-ray-test")  # a virtual filesystem: no one, root included, creates files there


def folder_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Bad places for an output folder: (the path, what the message says)."""
    (tmp_path / "a-file").write_text("x")
    return {
        "a file in its place": (tmp_path / "a-file", "a file stands there"),
        "a file in place of its folder": (tmp_path / "a-file" / "below", "is a file, not a folder"),
        "a virtual filesystem": (UNWRITABLE / "out", "cannot write in /proc"),
        "a name too long": (tmp_path / ("n" * 300) / "out", "File name too long"),
    }


def run_config(tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"target_lang": "zh"}))
    return path


def sweep_config(tmp_path: Path) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "target_langs": ["zh"]}))
    return path


# command -> how to call it with a bad output folder, and the flag or setting its message names
FOLDER_OUTPUTS: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "run output_dir": (lambda tmp, bad: run.main([str(run_config(tmp)), "--set", f"output_dir={bad}"]), "output_dir"),
    "run --storage": (lambda tmp, bad: run.main([str(run_config(tmp)), "--storage", str(bad)]), "--storage"),
    "sweep --storage": (lambda tmp, bad: sweep.main([str(sweep_config(tmp)), "--storage", str(bad), "--dry-run"]), "--storage"),
    "claims --work-dir": (
        lambda tmp, bad: claims.main([str(run_config(tmp)), "--langs", "zh", "--work-dir", str(bad), "--out", str(tmp / "o")]),
        "--work-dir",
    ),
    "claims --out": (
        lambda tmp, bad: claims.main([str(run_config(tmp)), "--langs", "zh", "--work-dir", str(tmp / "w"), "--out", str(bad)]),
        "--out",
    ),
}


def refused(capsys, call: Callable[[], None]) -> str:
    with pytest.raises(SystemExit) as exit_:
        call()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("command", FOLDER_OUTPUTS)
@pytest.mark.parametrize(
    "case", ["a file in its place", "a file in place of its folder", "a virtual filesystem", "a name too long"]
)
def test_a_command_refuses_an_output_folder_it_cannot_write_before_it_starts(tmp_path, capsys, command, case):
    call, flag = FOLDER_OUTPUTS[command]
    bad, says = folder_cases(tmp_path)[case]
    before = sorted(tmp_path.rglob("*"))
    message = refused(capsys, lambda: call(tmp_path, bad))
    assert flag in message and says in message
    assert sorted(path for path in tmp_path.rglob("*") if path.suffix != ".yaml") == [p for p in before if p.suffix != ".yaml"]


def test_a_sweep_whose_folder_under_storage_is_a_file_is_refused(tmp_path, capsys):
    storage = tmp_path / "storage"
    storage.mkdir()
    (storage / "s").write_text("not a sweep")
    message = refused(capsys, lambda: sweep.main([str(sweep_config(tmp_path)), "--storage", str(storage), "--dry-run"]))
    assert "sweep s under --storage" in message and "a file stands there" in message


@pytest.mark.parametrize(
    "case", ["a folder in its place", "a file in place of its folder", "a virtual filesystem", "a name too long"]
)
def test_results_refuses_a_plot_path_it_cannot_write_before_reading_anything(tmp_path, capsys, case):
    (tmp_path / "a-file").write_text("x")
    bad, says = {
        "a folder in its place": (tmp_path, "a folder stands there"),
        "a file in place of its folder": (tmp_path / "a-file" / "plot.png", "is a file, not a folder"),
        "a virtual filesystem": (UNWRITABLE / "plot.png", "cannot write in /proc"),
        "a name too long": (tmp_path / ("n" * 300 + ".png"), "File name too long"),
    }[case]
    message = refused(capsys, lambda: results.main([str(tmp_path / "no-results-here"), "--plot", str(bad)]))
    assert message.startswith("bistil_ray.results: error: --plot") and says in message


def test_export_refuses_a_file_where_the_onnx_folder_goes_before_loading_the_model(tmp_path, capsys):
    student = tmp_path / "student"
    student.mkdir()
    (student / "onnx").write_text("x")  # no model here at all: the check comes first
    message = refused(capsys, lambda: export.main([str(student), "--onnx"]))
    assert "onnx: a file stands where the ONNX folder goes" in message
