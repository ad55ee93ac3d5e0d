"""The building blocks every settings section is made of: ``Strict``, the base model that refuses unknown keys
and validates assignments, and the shared value types (bounded numbers, the closed ``Range`` a per-image
variation is drawn from, SynFace's ``RatioGrid`` of mixing ratios)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PositiveInt = Annotated[int, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Prob = Annotated[float, Field(ge=0, le=1)]
Cosine = Annotated[float, Field(ge=-1, le=1)]
# a cosine threshold in a judge encoder's space: one value for any judge, or one per judge (encoder name → value;
# the resolved judge's entry applies: facefoundry.quality.judging.judge_threshold)
JudgeCosine = Cosine | dict[str, Cosine]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Range(Strict):
    """A closed interval a per-image variation is drawn from uniformly."""

    min: float
    max: float

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            if len(v) != 2:
                raise ValueError(f"a range is [min, max], got {list(v)}")
            return {"min": v[0], "max": v[1]}
        return v

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min > self.max:
            raise ValueError(f"range min {self.min} is greater than max {self.max}")
        return self


# SynFace's mixing ratios: the official code draws from linspace(0, 1.05, 21, endpoint=False) = 0, 0.05, …, 1.0;
# the paper's Syn1 / Syn2 / Syn3 datasets fix φ at 1.0, at 0.8, or draw it from linspace(0.6, 1.0, 11).
RatioGrid = Literal["official", "syn1", "syn2", "syn3"] | Annotated[list[Prob], Field(min_length=1)]
