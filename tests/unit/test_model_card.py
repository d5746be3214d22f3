"""The student's model card: a Hugging Face card with the full metadata header, built from the
results schema, readable by huggingface_hub."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard

from bistil_ray.assets.teachers import teacher_origin
from bistil_ray.config import RunConfig
from bistil_ray.model_card import card_text, write_model_card
from bistil_ray.results_schema import description

RESULT = {
    "target_score": 0.71, "teacher_target_score": 0.73, "source_score": 0.8, "teacher_source_score": 0.82,
    "target_validation_score": None, "target_macro_f1": 0.7, "student_params": 20_400_000, "teacher_params": 117_700_000,
    "student_bytes": 83_000_000, "student_latency_ms": 12.5, "teacher_latency_ms": 40.0, "student_throughput": 150.0,
    "teacher_throughput": 70.0, "retention": 0.97, "speedup": 2.14, "vocab_size": 24_388, "student_layers": 6,
}  # fmt: skip


def test_the_card_has_the_hub_metadata_and_every_measured_figure_with_its_schema_description(tmp_path: Path):
    run = RunConfig.model_validate({"target_lang": "sw", "task": {"hub": {"path": "org/topics", "config": "{lang}"}}})
    (tmp_path / "README.md").write_text("an older card")
    write_model_card(tmp_path, run, RESULT)
    card = ModelCard.load(tmp_path / "README.md")

    assert card.data.language == ["en", "sw"] and card.data.license == "mit"
    assert card.data.base_model == "intfloat/multilingual-e5-small" and card.data.datasets == ["org/topics"]
    assert card.data.pipeline_tag == "text-classification"
    results = {(result.dataset_config, result.dataset_split): result.metric_value for result in card.data.eval_results}
    assert results == {("sw", "test"): 0.71, ("en", "validation"): 0.8}
    assert "| `target_score` | 0.71 | 0.73 |" in card.text and description("target_score") in card.text
    assert "| `speedup` | 2.14 |" in card.text and "target_validation_score" not in card.text  # not measured
    assert "2000 dense" not in card.text and f"{run.phase2.full_steps} dense" in card.text


def test_a_teacher_of_unknown_origin_leaves_licence_and_base_model_out(tmp_path: Path):
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    assert teacher_origin(str(teacher)) == (None, None)
    (teacher / "README.md").write_text("---\nlicense: apache-2.0\nbase_model: org/base\n---\nA teacher.\n")
    assert teacher_origin(str(teacher)) == ("org/base", "apache-2.0")
    run = RunConfig.model_validate({"target_lang": "de"})
    text = card_text(run, RESULT, base_model=None, license=None)
    assert "license" not in ModelCard(text).data.to_dict() and "base_model" not in ModelCard(text).data.to_dict()
