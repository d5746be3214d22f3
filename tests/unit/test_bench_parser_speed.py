"""The parser speed bench times a tiny teacher and student on a CoNLL-U file and reports each mode."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from tiny_task import tiny_teacher

from bench import parser_speed
from bistil_ray.data.token_files import UD_RELATIONS
from bistil_ray.method.parser import BiaffineParser

WORDS = ["anna", "lives", "in", "paris", "and", "peter", "visits", "berlin"]
SENTENCE = "1\tanna\t_\t_\t_\t_\t2\tnsubj\t_\t_\n2\tlives\t_\t_\t_\t_\t0\troot\t_\t_\n3\tin\t_\t_\t_\t_\t4\tcase\t_\t_\n4\tparis\t_\t_\t_\t_\t2\tobl\t_\t_\n\n"


def test_each_mode_of_each_model_is_timed_and_the_ratios_follow_from_the_rates(tmp_path: Path, monkeypatch):
    torch.manual_seed(0)
    folders = {}
    for name in ("teacher", "student"):
        folder = tiny_teacher(tmp_path / name, WORDS)
        BiaffineParser.from_pretrained(folder, id2label=dict(enumerate(UD_RELATIONS))).save_pretrained(folder)  # beside its tokenizer
        folders[name] = folder
    treebank = tmp_path / "test.conllu"
    treebank.write_text(SENTENCE * 40, encoding="utf-8")
    argv = ["parser_speed", "--teacher", str(folders["teacher"]), "--student", str(folders["student"]), "--treebank", str(treebank),
            "--sentences", "32", "--repeats", "1", "--warmup", "0", "--out", str(tmp_path / "out")]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    parser_speed.main()

    record = json.loads((tmp_path / "out" / "parser_speed.json").read_text())
    assert record["settings"]["sentences"] == 32
    for name, model in record["models"].items():
        assert model["sub_words_per_word"] == 1.0  # every word is one piece of the tiny vocabulary
        assert all(model[f"{mode} per s"] > 0 for mode in parser_speed.MODES)
    for mode in parser_speed.MODES:
        assert record["speedup"][mode] == record["models"]["student"][f"{mode} per s"] / record["models"]["teacher"][f"{mode} per s"]
    assert "| student / teacher |" in (tmp_path / "out" / "parser_speed.md").read_text()
