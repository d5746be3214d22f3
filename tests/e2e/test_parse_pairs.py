"""A parse pair on tiny local files, end to end without the shared treebanks: the teacher learns the
one tree shape, the student distils it, exports as an encoder directory with its parser head beside,
and reloads to the same trees; the claims bench judges its orderings by LAS, with UAS in its rows."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from datasets import Dataset
from tiny_task import tiny_teacher
from tiny_token_task import ENTITIES, FILLER, TREE, parsed_task_files, tagged
from transformers import AutoModel, AutoTokenizer

from bench import claims
from bistil_ray.method.evaluation import predict
from bistil_ray.method.export import load_exported
from bistil_ray.method.parser import BiaffineParser
from bistil_ray.run import main as run_main

TINY_PARSE = {
    "source_lang": "en", "target_lang": "de",
    "task_teacher": {"steps": 40, "eval_every": 20, "batch_size": 8, "lr": 3e-3},
    "vocabulary": {"word_frequencies": False},
    "student": {"layers": 2},
    "phase1": {"steps": 4, "eval_every": 2, "batch_size": 8, "validation_sentences": 8},
    "phase2": {"full_steps": 10, "sparse_steps": 10, "eval_every": 5, "batch_size": 8, "lr": 3e-3, "target_text_ratio": 0.25},
}  # fmt: skip


def tiny_parse_config(tmp_path: Path) -> Path:
    teacher = tiny_teacher(tmp_path / "teacher", [*ENTITIES, *FILLER["en"], *FILLER["de"]])
    config = tmp_path / "run.yaml"
    settings = {**TINY_PARSE, **parsed_task_files(tmp_path / "files"), "teacher": str(teacher), "output_dir": str(tmp_path / "out")}
    config.write_text(yaml.safe_dump(settings))
    return config


def test_a_parse_pair_trains_exports_and_reloads_to_the_same_trees(tmp_path: Path):
    run_main([str(tiny_parse_config(tmp_path))])
    result = json.loads((tmp_path / "out" / "en-de" / "result.json").read_text())
    assert result["metric"] == "las" and 0 <= result["target_score"] <= result["target_uas"] <= 1
    assert result["teacher_source_score"] > 0.5  # the teacher learnt the tree
    student_dir = tmp_path / "out" / "en-de" / "student"
    assert AutoModel.from_pretrained(student_dir).config.num_hidden_layers == 2  # the encoder, with plain transformers
    assert {"bistil_parser.json", "bistil_parser.safetensors", "README.md"} <= {path.name for path in student_dir.iterdir()}
    assert "BiaffineParser.from_pretrained" in (student_dir / "README.md").read_text()

    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    parser = BiaffineParser.from_pretrained(student_dir).eval()
    ours, _ = load_exported(student_dir)
    test = Dataset.from_dict({"tokens": [words for words, _ in tagged("de", 12, "pos")]})
    trees = predict(parser, tokenizer, test, ["tokens"])
    assert [t.tolist() for t in trees] == [t.tolist() for t in predict(ours, tokenizer, test, ["tokens"])]
    heads, relations = parser.parse(tokenizer, ["anna", "wohnt", "in", "berlin"])
    assert len(heads) == len(relations) == 4 and all(0 <= head <= 4 for head in heads)


def test_the_claims_bench_scores_a_parse_task_by_las(tmp_path: Path):
    config = tiny_parse_config(tmp_path)
    out = tmp_path / "claims"
    claims.main([str(config), "--langs", "de", "--seeds", "0", "--recipes", "full", "--students", "bistil", "no_phase1",
                 "--work-dir", str(tmp_path / "work"), "--out", str(out)])  # fmt: skip
    rows = pq.read_table(out / "claims-train.parquet").to_pylist()
    assert {row["model"] for row in rows} == {"teacher:full", "trimmed_teacher", "bistil", "no_phase1"}
    for row in rows:
        assert 0 <= row["target_score"] <= row["target_uas"] <= 1 and 0 <= row["target_tree_las"] <= row["target_tree_uas"] <= 1
        assert row["test_examples"] == 12 and len(row["correct"]) == 12 * len(TREE[0])  # sentences drawn, words scored
    record = json.loads((out / "claims-train.json").read_text())
    assert record["settings"]["metric"] == "las" and "bistil > no_phase1" in [claim["claim"] for claim in record["claims"]]
    assert "LAS" in (out / "claims-train.md").read_text()
