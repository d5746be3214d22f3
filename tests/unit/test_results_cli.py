"""`python -m bistil_ray.results` on a small results folder written with the sweep's own writer, and
the generated reference in docs/ (every sweep key and every results column, never stale)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from bistil_ray.orchestration.results import write_table
from bistil_ray.results_schema import SUMMARY_SCHEMA, TRIALS_SCHEMA, summary_rows, trial_row
from bistil_ray.orchestration.sweep_config import SweepConfig, load_sweep
from bistil_ray.reference import reference_markdown
from bistil_ray.results import main

REPO = Path(__file__).resolve().parents[2]
CONSTANTS = {"sweep": "demo", "source_lang": "en", "teacher": "builtin:multilingual-e5-small", "task": "chatterbot"}
TEACHER = {"teacher_target_score": 0.80, "teacher_params": 117_000_000, "teacher_latency_ms": 9.0}

# en-de: d1 is best by the objective; d1, d2, d3 form the objective/latency front, d4 is dominated by d2.
DE_TRIALS = {  # trial id: (objective, target score, latency ms, parameters)
    "d1": (0.90, 0.70, 4.0, 40_000_000),
    "d2": (0.85, 0.72, 2.0, 30_000_000),
    "d3": (0.70, 0.60, 1.0, 20_000_000),
    "d4": (0.80, 0.75, 3.0, 10_000_000),
}


def finished(trial_id: str, target: str, objective: float, target_score: float, latency: float, params: int) -> dict:
    config = {"target_lang": target, "student_layers": 6, "density": 0.08}
    result = {
        "metric": "accuracy",
        "objective_score": objective,
        "target_score": target_score,
        "student_latency_ms": latency,
        "student_params": params,
        "completed": True,
        **TEACHER,
    }
    return trial_row(CONSTANTS, trial_id, config, result, error=None)


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    """What a sweep leaves in <storage>/demo: both tables and the configuration it started with."""
    folder = tmp_path / "storage" / "demo"
    rows = [finished(trial_id, "de", *values) for trial_id, values in DE_TRIALS.items()]
    rows += [finished("i1", "it", 0.60, 0.50, 2.5, 30_000_000), finished("i2", "it", 0.65, 0.55, 3.5, 30_000_000)]
    rows.append(trial_row(CONSTANTS, "p1", {"target_lang": "de"}, {"objective_score": 0.2}, None))
    rows.append(trial_row(CONSTANTS, "e1", {"target_lang": "it"}, {}, "RuntimeError: worker died"))
    write_table(folder / "trials.parquet", rows, TRIALS_SCHEMA)
    write_table(folder / "summary.parquet", summary_rows(rows, "student_latency_ms"), SUMMARY_SCHEMA)
    sweep = SweepConfig(name="demo", target_langs=["de", "it"])
    (folder / "sweep.json").write_text(sweep.model_dump_json())
    return folder


def run_cli(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_default_is_one_summary_row_per_pair_with_its_best_trial(results_dir, capsys):
    pairs = json.loads(run_cli(capsys, str(results_dir), "--format", "json"))
    assert [pair["pair"] for pair in pairs] == ["en-de", "en-it"]
    de, it = pairs
    assert (de["ok"], de["pruned"], de["failed"], de["best_trial"], de["pareto"]) == (4, 1, 0, "d1", 3)
    assert (it["ok"], it["pruned"], it["failed"], it["best_trial"]) == (2, 0, 1, "i2")
    assert de["target"] == 0.70 and de["teacher"] == 0.80 and de["latency_ms"] == 4.0

    table = run_cli(capsys, str(results_dir))
    assert "en-de" in table and "d1" in table and "en-it" in table


def test_sql_runs_over_both_views_and_prints_csv(results_dir, capsys):
    query = (
        "SELECT t.target_lang, count(*) AS trials, max(s.target_score) FILTER (WHERE s.is_best) AS best_target "
        "FROM trials t LEFT JOIN summary s USING (trial_id) GROUP BY 1 ORDER BY 1"
    )
    rows = list(csv.reader(io.StringIO(run_cli(capsys, str(results_dir), "--sql", query, "--format", "csv"))))
    assert rows == [["target_lang", "trials", "best_target"], ["de", "5", "0.7"], ["it", "3", "0.55"]]


def test_pareto_lists_each_pairs_front_cheapest_first_for_the_sweeps_tradeoff(results_dir, capsys):
    front = json.loads(run_cli(capsys, str(results_dir), "--pareto", "--format", "json"))
    assert [(row["pair"], row["trial_id"]) for row in front] == [
        ("en-de", "d3"), ("en-de", "d2"), ("en-de", "d1"), ("en-it", "i1"), ("en-it", "i2")
    ]
    assert set(front[0]) >= {"objective_score", "student_latency_ms", "target_score", "student_path"}

    by_size = run_cli(capsys, str(results_dir), "--pareto", "--tradeoff", "student_params", "--format", "json")
    by_size = json.loads(by_size)
    assert [row["trial_id"] for row in by_size if row["pair"] == "en-de"] == ["d4", "d2", "d1"]


def test_plot_writes_a_png_with_one_row_of_panels_per_pair(results_dir, tmp_path, capsys):
    from matplotlib.image import imread

    plot = tmp_path / "plots" / "tradeoffs.png"
    run_cli(capsys, str(results_dir), "--plot", str(plot))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = imread(plot).shape
    assert width > height > 500  # two pairs stacked, two panels side by side
    assert not list(plot.parent.glob(".tmp-*"))


def test_a_results_uri_reads_like_a_local_folder(results_dir, capsys):
    local = run_cli(capsys, str(results_dir), "--format", "csv")
    assert run_cli(capsys, results_dir.as_uri(), "--format", "csv") == local


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{storage}"], "no trials.parquet here; pass a sweep's folder: demo"),
        (["{storage}/nothing"], "no trials.parquet here"),
        (["{storage}/demo", "--sql", "SELECT nope FROM trials"], "--sql: Binder Error"),
        (["{storage}/demo", "--tradeoff", "student_params"], "--tradeoff applies to --pareto only"),
    ],
)
def test_input_errors_are_one_line_and_exit_2(results_dir, capsys, argv, message):
    storage = str(results_dir.parent)
    with pytest.raises(SystemExit) as exit_info:
        main([part.format(storage=storage) for part in argv])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and message in error


def test_a_query_without_rows_is_an_answer(results_dir, capsys):
    out = run_cli(capsys, str(results_dir), "--sql", "SELECT trial_id FROM trials WHERE false", "--format", "json")
    assert json.loads(out) == []


def test_plot_of_a_sweep_without_finished_trials_is_a_user_error(tmp_path, capsys):
    folder = tmp_path / "empty"
    write_table(folder / "trials.parquet", [], TRIALS_SCHEMA)
    write_table(folder / "summary.parquet", [], SUMMARY_SCHEMA)
    with pytest.raises(SystemExit):
        main([str(folder), "--plot", str(tmp_path / "p.png")])
    assert "no finished trial" in capsys.readouterr().err and not (tmp_path / "p.png").exists()


def test_docs_reference_is_what_the_code_generates():
    committed = (REPO / "docs" / "reference.md").read_text(encoding="utf-8")
    assert committed == reference_markdown(), "regenerate: python -m bistil_ray.reference > docs/reference.md"


def dotted_keys(mapping: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in mapping.items():
        keys.append(prefix + key)
        if isinstance(value, dict):
            keys += dotted_keys(value, f"{prefix}{key}.")
    return keys


def test_reference_covers_every_sweep_key_and_every_column_and_its_example_is_a_valid_sweep(tmp_path):
    reference = reference_markdown()
    for field in SUMMARY_SCHEMA:
        assert f"| `{field.name}` |" in reference
    sweep = SweepConfig(name="s", target_langs=["de"], corpora={"de": {"hub": {"path": "wiki"}}})
    keys = [key.replace("corpora.de", "corpora.<lang>") for key in dotted_keys(sweep.model_dump(mode="json"))]
    assert "corpora.<lang>.hub.streaming" in keys and "search_space.density" in keys
    for key in keys:
        assert f"| `{key}` |" in reference or f"### `{key}" in reference, key  # a key, or a section's heading
    example = reference.split("```yaml\n")[1].split("```")[0]
    (tmp_path / "example.yaml").write_text(example)
    assert load_sweep(tmp_path / "example.yaml") == SweepConfig.model_validate(yaml.safe_load(example))
