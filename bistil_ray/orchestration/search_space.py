"""The searched settings of a sweep: which run settings Optuna may vary, and how.

Each dimension names one setting of a run (`density` is `phase2.density`, ...). In the sweep YAML it
is either a number (fixed) or a mapping with exactly one of `choice`, `uniform`, `loguniform` or
`integer`; a dimension left out keeps the value of its section (`phase2.density`, ...). Every
dimension, fixed ones included, is part of each pair's Optuna study, so a study's trials carry the
complete configuration.
"""

from __future__ import annotations

from typing import Any

import optuna
from pydantic import Field, create_model, model_validator

from bistil_ray.config import DIMENSIONS, StrictModel, dimension_field

Number = int | float
Value = Number | str  # a recipe name (teacher_method) is the one setting that is not a number

DIMENSION_KINDS = ("fixed", "choice", "uniform", "loguniform", "integer")


class Dimension(StrictModel):
    """One searched setting: exactly one of a fixed value, a choice, or an inclusive range."""

    fixed: Value | None = Field(None, description="one value (a bare number or name means this)")
    choice: list[Value] | None = Field(None, min_length=1, description="values to choose from")
    uniform: tuple[float, float] | None = Field(None, description="[low, high]")
    loguniform: tuple[float, float] | None = Field(None, description="[low, high], sampled on a log scale")
    integer: tuple[int, int] | None = Field(None, description="[low, high], whole numbers, both included")

    @model_validator(mode="before")
    @classmethod
    def _number_means_fixed(cls, value: Any) -> Any:
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return {"fixed": value}
        if not isinstance(value, dict):
            raise ValueError(f"expected a number, a name or a mapping with one of {', '.join(DIMENSION_KINDS)}")
        return value

    @model_validator(mode="after")
    def _one_well_formed_kind(self) -> "Dimension":
        given = [kind for kind in DIMENSION_KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(DIMENSION_KINDS)} (got {given or 'none'})")
        bounds = self.uniform or self.loguniform or self.integer
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"{given[0]}: the low bound must be below the high bound (got {list(bounds)})")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform: the low bound must be positive")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in DIMENSION_KINDS if getattr(self, kind) is not None)

    @property
    def is_searched(self) -> bool:
        return self.kind != "fixed" and not (self.choice is not None and len(self.choice) == 1)

    def extremes(self) -> list[Value]:
        """Values whose validity implies the validity of every value the dimension can take."""
        if self.fixed is not None:
            return [self.fixed]
        if self.choice is not None:
            return list(self.choice)
        return list(self.uniform or self.loguniform or self.integer)  # type: ignore[arg-type]

    def values(self) -> list[Value] | None:
        """Every value, for discrete dimensions; None for continuous ones."""
        if self.integer is not None:
            return list(range(self.integer[0], self.integer[1] + 1))
        return self.extremes() if self.kind in ("fixed", "choice") else None

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.fixed is not None:
            return optuna.distributions.CategoricalDistribution([self.fixed])
        if self.choice is not None:
            return optuna.distributions.CategoricalDistribution(self.choice)
        if self.integer is not None:
            return optuna.distributions.IntDistribution(*self.integer)
        if self.loguniform is not None:
            return optuna.distributions.FloatDistribution(*self.loguniform, log=True)
        return optuna.distributions.FloatDistribution(*self.uniform)  # type: ignore[misc]

    def describe(self) -> str:
        def shown(value: Value) -> str:
            return value if isinstance(value, str) else f"{value:g}"

        if self.fixed is not None:
            return shown(self.fixed)
        if self.choice is not None:
            return "choice " + ", ".join(shown(value) for value in self.choice)
        low, high = self.uniform or self.loguniform or self.integer  # type: ignore[misc]
        return f"{self.kind} [{low:g}, {high:g}]"


# One optional field per `DIMENSIONS` entry.
SearchSpace = create_model(
    "SearchSpace",
    __base__=StrictModel,
    __doc__="Dimensions a sweep varies; those left out keep their section's value.",
    **{
        name: (Dimension | None, Field(None, description=f"{section}.{field}: {dimension_field(name).description}"))
        for name, (section, field) in DIMENSIONS.items()
    },
)


def optuna_space(dimensions: dict[str, Dimension]) -> dict[str, optuna.distributions.BaseDistribution]:
    return {name: dimension.distribution() for name, dimension in dimensions.items()}


def apply_dimensions(sections: dict[str, dict[str, Any]], values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Section dicts (`student`, `phase1`, ...) with the dimensions' values written into them."""
    updated = {name: dict(section) for name, section in sections.items()}
    for name, value in values.items():
        section, field = DIMENSIONS[name]
        updated[section][field] = value
    return updated
