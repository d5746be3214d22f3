"""The single-run entry point: bad input exits 2 with one line, naming the key or file."""

from pathlib import Path

import pytest
from run_cli import E5_TINY_RUN, run_cli, write_config

from bistil_ray.run import main


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"phase2": {"density": 1.5}}, "phase2.density: Input should be less than or equal to 1"),
        ({"phase1": {"stepz": 3}}, "phase1.stepz: unknown key; did you mean 'steps'?"),
        ({"target_lang": "en"}, "target_lang equals source_lang"),
        ({"teacher": "/nonexistent/teacher"}, "teacher '/nonexistent/teacher'"),
        ({"target_lang": "xx"}, "no language 'xx'"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, change: dict, expected: str, capsys):
    settings = {**E5_TINY_RUN, **change, "output_dir": str(tmp_path / "out")}
    if "phase1" in change or "phase2" in change:
        key = next(iter(change))
        settings[key] = {**E5_TINY_RUN[key], **change[key]}
    with pytest.raises(SystemExit) as exit_status:
        main([str(write_config(tmp_path / "run.yaml", settings))])
    assert exit_status.value.code == 2
    stderr = capsys.readouterr().err
    assert expected in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_missing_config_file_exits_2(tmp_path: Path):
    result = run_cli(str(tmp_path / "absent.yaml"))
    assert result.returncode == 2 and "absent.yaml: no such file" in result.stderr
    assert "Traceback" not in result.stderr
