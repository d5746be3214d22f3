"""YAML read strictly, as classes of cases generated from the schema: a key given twice, a boolean
where a number belongs, YAML 1.1's yes/no/on/off, a malformed or tagged `--set` value, an empty
`--storage`, a sweep name longer than a folder name may be."""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import Literal, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from bistil_ray.artifacts import storage_root
from bistil_ray.config import RunConfig, load_config, parse_yaml
from bistil_ray.errors import UserInputError
from bistil_ray.orchestration.sweep_config import SweepConfig

VALID_RUN = {"target_lang": "de", "phase1": {"steps": 10}, "phase2": {"density": 0.1}, "vocabulary": {"threshold": 1e-6}}
HUB_TASK = {"task": {"hub": {"path": "org/dataset"}}}  # where a number under task.hub is set, the rest of a hub task


def numeric_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """The dotted path of every number (int or float, not bool) in `model` and its sections; inside a
    mapping (`corpora`, `per_method`) under one sample key."""
    paths = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if get_origin(annotation) is dict:
            key_type, value_type = get_args(annotation)
            key = get_args(key_type)[0] if get_origin(key_type) is Literal else "de"
            if isinstance(value_type, type) and issubclass(value_type, BaseModel):
                paths += numeric_fields(value_type, f"{prefix}{name}.{key}.")
            continue
        accepted = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
        if {int, float} & set(accepted) and bool not in accepted:
            paths.append(prefix + name)
        for kind in accepted:
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                paths += numeric_fields(kind, f"{prefix}{name}.")
    return paths


def write(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def refused(model, path: Path, overrides: list[str] = ()) -> str:
    with pytest.raises(UserInputError) as error:
        load_config(model, path, list(overrides))
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


RUN_NUMBERS = numeric_fields(RunConfig)
SWEEP_NUMBERS = [path for path in numeric_fields(SweepConfig) if not path.startswith("search_space.")]


def test_the_schema_has_the_numbers_these_cases_are_generated_from():
    assert {"phase1.steps", "phase2.density", "student.layers", "vocabulary.threshold"} <= set(RUN_NUMBERS)
    assert {"trials_per_pair", "resources.workers_per_trial", "resources.cpus_per_worker"} <= set(SWEEP_NUMBERS)


@pytest.mark.parametrize("path", RUN_NUMBERS)
@pytest.mark.parametrize("boolean", ["true", "false"])
def test_a_boolean_where_a_run_number_belongs_is_refused_naming_the_field(tmp_path, path, boolean):
    config = {**VALID_RUN, **(HUB_TASK if path.startswith("task.hub.") else {})}
    message = refused(RunConfig, write(tmp_path, config), [f"{path}={boolean}"])
    assert path in message and "boolean" in message


@pytest.mark.parametrize("path", SWEEP_NUMBERS)
def test_a_boolean_where_a_sweep_number_belongs_is_refused_naming_the_field(tmp_path, path):
    config = {"name": "s", "target_langs": ["de"], **(HUB_TASK if path.startswith("task.hub.") else {})}
    message = refused(SweepConfig, write(tmp_path, config), [f"{path}=true"])
    assert path in message and "boolean" in message


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "y", "n", "Yes", "NO"])
def test_yaml_1_1_booleans_are_plain_words(word):
    # `target_langs: [no]` is Norwegian, not false; `steps: yes` is an error, not 1.
    assert parse_yaml(f"value: {word}\nlist: [{word}]", "x") == {"value": word, "list": [word]}
    assert parse_yaml("a: true\nb: False", "x") == {"a": True, "b": False}


@pytest.mark.parametrize("section", list(VALID_RUN))
def test_a_key_given_twice_is_refused_with_its_line(tmp_path, section):
    text = yaml.safe_dump(VALID_RUN)
    twice = text + yaml.safe_dump({section: VALID_RUN[section]})
    message = refused(RunConfig, write(tmp_path, twice))
    assert f"'{section}' is given twice" in message and "line" in message


def test_a_key_given_twice_inside_a_section_is_refused(tmp_path):
    message = refused(RunConfig, write(tmp_path, "target_lang: de\nphase2:\n  density: 0.1\n  density: 0.2\n"))
    assert "'density' is given twice" in message and "line 4" in message


MALFORMED_VALUES = [
    "[1", "{a: 1", "'open", '"open', "a: b: c", "- a\n- b: [", "*unknown_alias", "!!python/object:os.system ls",
    "!!python/name:os.system", "!custom 1", "!!binary not-base64!", "\t1", "{a: 1, a: 2}",
]


@pytest.mark.parametrize("value", MALFORMED_VALUES)
def test_a_malformed_or_tagged_set_value_is_one_line_naming_the_flag(tmp_path, value):
    message = refused(RunConfig, write(tmp_path, VALID_RUN), [f"phase1.steps={value}"])
    assert message.startswith("--set phase1.steps") or "phase1.steps" in message


@pytest.mark.parametrize("value", ["", " ", "\t"])
def test_an_empty_storage_is_refused(value):
    with pytest.raises(UserInputError, match="--storage: empty"):
        storage_root(value)


def test_a_sweep_name_longer_than_a_folder_name_may_be_is_refused(tmp_path):
    message = refused(SweepConfig, write(tmp_path, {"name": "a" * 101, "target_langs": ["de"]}))
    assert "name" in message and "100 characters" in message
    assert load_config(SweepConfig, write(tmp_path, {"name": "a" * 100, "target_langs": ["de"]})).name == "a" * 100
