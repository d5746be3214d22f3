"""The reference half of the user guide, generated from the code so that it cannot drift from it:
every sweep YAML key (from the pydantic models: type, default, bounds, description) and every
results column (from the declared Parquet schema).

    python -m bistil_ray.reference > docs/reference.md

A test fails when docs/reference.md differs from what this prints.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Iterator, Literal, Union, get_args, get_origin

import annotated_types
import pyarrow as pa
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from bistil_ray.results_schema import SUMMARY_SCHEMA, TRIALS_SCHEMA
from bistil_ray.orchestration.search_space import DIMENSIONS, Dimension
from bistil_ray.orchestration.sweep_config import SweepConfig

# An example for the keys that have no default; every other key of the example file is its default.
EXAMPLE_REQUIRED = {"name": "my-sweep", "target_langs": ["de", "sw"]}


def yaml_value(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    return yaml.safe_dump(value, default_flow_style=True, width=1000).removesuffix("...\n").strip()


def type_name(annotation: Any) -> str:
    origin, arguments = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " or ".join(f"`{value}`" for value in arguments)
    if origin in (Union, types.UnionType):
        present = [argument for argument in arguments if argument is not type(None)]
        if set(present) == {int, float}:
            return "number"
        return " or ".join(type_name(argument) for argument in present)
    if origin is list:
        return f"list of {type_name(arguments[0])}"
    if origin is tuple:
        return f"[low, high] ({type_name(arguments[0])})"
    if origin is dict:
        return f"mapping: language to {type_name(arguments[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "dimension" if annotation is Dimension else "section"
    return {bool: "true/false", int: "integer", float: "number", str: "text", Path: "path"}[annotation]


def bounds(field: FieldInfo) -> str:
    """The field's constraints in words: `> 0`, `at most 2 items`, a pattern."""
    described = []
    for constraint in field.metadata:
        if isinstance(constraint, annotated_types.Gt):
            described.append(f"> {constraint.gt}")
        elif isinstance(constraint, annotated_types.Ge):
            described.append(f">= {constraint.ge}")
        elif isinstance(constraint, annotated_types.Lt):
            described.append(f"< {constraint.lt}")
        elif isinstance(constraint, annotated_types.Le):
            described.append(f"<= {constraint.le}")
        elif isinstance(constraint, annotated_types.MinLen):
            described.append(f"at least {constraint.min_length} item(s)")
        elif isinstance(constraint, annotated_types.MaxLen):
            described.append(f"at most {constraint.max_length} items")
        elif getattr(constraint, "pattern", None):
            described.append(f"matches `{constraint.pattern}`")
    return ", ".join(described)


def default_of(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    return f"`{yaml_value(field.get_default(call_default_factory=True))}`"


def section_model(annotation: Any) -> type[BaseModel] | None:
    """The section model behind a field (`Phase2Config`, `HubTaskSpec | None`, `dict[str, CorpusSpec]`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return None if annotation is Dimension else annotation
    found = [section_model(argument) for argument in get_args(annotation)]
    return next((model for model in found if model is not None), None)


def sections(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, type[BaseModel], FieldInfo | None]]:
    """(YAML path, model, the field holding it) for `model` and every section inside it, depth first."""
    yield prefix, model, None
    for name, field in model.model_fields.items():
        nested = section_model(field.annotation)
        if nested is None:
            continue
        path = f"{prefix}{name}" + (".<lang>" if get_origin(field.annotation) is dict else "")
        for inner_path, inner, holder in sections(nested, f"{path}."):
            yield inner_path, inner, field if inner is nested and holder is None else holder


def description_of(model: type[BaseModel], name: str) -> str:
    """The field's description, or the one of the field it overrides (`Phase2Config.lr` -> `OptimConfig.lr`)."""
    for ancestor in model.__mro__:
        field = getattr(ancestor, "model_fields", {}).get(name)
        if field is not None and field.description:
            return field.description
    return ""


def markdown_text(text: str) -> str:
    """Text for a table cell: `<key>` would read as an HTML tag, `|` as a cell border."""
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def key_rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        if section_model(field.annotation) is not None:
            continue
        description = description_of(model, name)
        if model is SweepConfig.model_fields["search_space"].annotation:
            section, setting = DIMENSIONS[name]
            description = f"searched value of `{section}.{setting}`; left out, it stays at that setting"
        rows.append(
            f"| `{prefix}{name}` | {type_name(field.annotation)} | {default_of(field)} | {bounds(field)} | "
            f"{markdown_text(description)} |"
        )
    return rows


def sweep_reference() -> list[str]:
    lines = ["## Sweep YAML keys", ""]
    lines += [
        "Generated from the configuration models (`bistil_ray.config`, `bistil_ray.orchestration`). A key",
        "left out takes its default; an unknown key is an error that names the closest valid key. Any key",
        "can be overridden on the command line: `--set phase2.density=0.1`.",
        "",
    ]
    for path, model, holder in sections(SweepConfig):
        heading = f"`{path.rstrip('.')}`" if path else "top level"
        summary = " ".join((holder.description if holder and holder.description else model.__doc__ or "").split())
        lines += [f"### {heading}", ""]
        if summary:
            lines += [summary, ""]
        if holder is not None and _default_differs(holder, model):
            lines += [f"Default: `{yaml_value(holder.get_default().model_dump(mode='json', exclude_none=True))}`.", ""]
        lines += ["| key | type | default | bounds | description |", "|---|---|---|---|---|"]
        lines += key_rows(model, path) + [""]
    lines += ["### A search-space dimension", "", " ".join(Dimension.__doc__.split()), ""]
    lines += ["| key | type | description |", "|---|---|---|"]
    lines += [
        f"| `{kind}` | {type_name(field.annotation)} | {field.description} |"
        for kind, field in Dimension.model_fields.items()
    ]
    lines += ["", "### Every key at its default", ""]
    lines += ["A complete sweep file: the required keys filled in, every other key at its default.", ""]
    lines += ["```yaml", example_sweep_yaml().rstrip(), "```", ""]
    return lines


def _default_differs(holder: FieldInfo, model: type[BaseModel]) -> bool:
    """Whether a section's default is other than its keys' defaults (the task defaults to builtin)."""
    if not isinstance(holder.default, BaseModel):
        return False
    try:
        return model() != holder.get_default()
    except ValidationError:
        return True


def example_sweep_yaml() -> str:
    example = SweepConfig(**EXAMPLE_REQUIRED).model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(example, sort_keys=False, width=100)


def column_rows(fields: list[pa.Field]) -> list[str]:
    return [
        f"| `{field.name}` | {field.type} | {markdown_text(field.metadata[b'description'].decode())} |"
        for field in fields
    ]


def results_reference() -> list[str]:
    extra = [field for field in SUMMARY_SCHEMA if field.name not in TRIALS_SCHEMA.names]
    return [
        "## Results columns",
        "",
        "Generated from the declared schema (`bistil_ray.orchestration.results`); the same descriptions",
        "are stored in the Parquet files' schema metadata.",
        "",
        "### `trials.parquet`: one row per finished, pruned or failed trial",
        "",
        "| column | type | description |",
        "|---|---|---|",
        *column_rows(list(TRIALS_SCHEMA)),
        "",
        "### `summary.parquet`: per pair, the best trial and the Pareto members",
        "",
        "Every column of `trials.parquet`, for the pair's ok trials that are best or on the Pareto front, and:",
        "",
        "| column | type | description |",
        "|---|---|---|",
        *column_rows(extra),
        "",
    ]


def reference_markdown() -> str:
    lines = [
        "# Reference: sweep YAML keys and results columns",
        "",
        "<!-- Generated by `python -m bistil_ray.reference > docs/reference.md`; do not edit by hand. -->",
        "",
        *sweep_reference(),
        *results_reference(),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_markdown(), end="")
