"""The sweep spec's schema and the checked sweep: what a spec file may say, and what every trial receives.

:mod:`facefoundry.sweep.spec` loads a spec file into these models and checks it against the
configuration schema; the driver and every Ray trial then read the plain :class:`Sweep`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from facefoundry.config import Config, Strict

PositiveInt = Annotated[int, Field(gt=0)]
Number = int | float

_PRIMITIVE = (type(None), bool, int, float, str)


class Dim(Strict):
    """One dimension of the search space."""

    type: Literal["uniform", "loguniform", "int", "randint", "choice", "grid"]
    low: Number | None = None
    high: Number | None = None
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> Dim:
        if self.type in ("choice", "grid"):
            if self.low is not None or self.high is not None:
                raise ValueError(f"a {self.type} takes values: [...], not low/high")
            if not self.values:
                raise ValueError(f"empty {self.type}: values needs at least one value")
            return self
        if self.values is not None:
            raise ValueError(f"a {self.type} range takes low and high, not values")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} range needs low and high")
        if self.type in ("int", "randint"):
            if not (isinstance(self.low, int) and isinstance(self.high, int)):
                raise ValueError(f"an int range needs integer low and high (got {self.low!r}, {self.high!r})")
            if self.low > self.high:
                raise ValueError(f"empty range: low {self.low} > high {self.high}")
        elif not self.low < self.high:
            raise ValueError(f"empty range: low {self.low} must be below high {self.high}")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError(f"a loguniform range needs low > 0 (got {self.low})")
        return self

    def bounds(self) -> tuple[Number, Number]:
        """``(low, high)`` of a range dimension: ``_check`` requires both."""
        assert self.low is not None and self.high is not None, f"a {self.type} dimension has no low/high"
        return self.low, self.high

    def int_bounds(self) -> tuple[int, int]:
        """``(low, high)`` of an int/randint dimension: ``_check`` requires integers."""
        low, high = self.bounds()
        assert isinstance(low, int) and isinstance(high, int), f"a {self.type} dimension has non-integer ends"
        return low, high

    def choices(self) -> list[Any]:
        """``values`` of a choice/grid dimension: ``_check`` requires them."""
        assert self.values is not None, f"a {self.type} dimension has no values"
        return self.values

    @property
    def encoded(self) -> bool:
        """Choices that are not plain scalars (lists, mappings) travel as JSON strings (Optuna needs scalars)."""
        return self.values is not None and not all(isinstance(v, _PRIMITIVE) for v in self.values)

    def candidates(self) -> list[Any]:
        """Values that must each give a valid config: every choice, or the ends and an inner point."""
        if self.values is not None:
            return list(self.values)
        if self.type in ("int", "randint"):
            return [self.low, self.high]
        low, high = self.bounds()
        inner = (
            math.exp(math.log(low) + 0.37 * (math.log(high) - math.log(low)))
            if self.type == "loguniform"
            else low + 0.37 * (high - low)
        )
        return [low, high, inner]

    def extremes(self) -> list[Any]:
        return list(self.values) if self.values is not None else [self.low, self.high]


# what a trial cost, in wall-clock seconds: its dataset's making (generator training, generation, realism: what
# the recipe costs, also when the trial reused a dataset another trial made) and its FR training so far
COST_METRICS = ("cost/dataset_seconds", "cost/train_seconds", "cost/total_seconds")
COST_ALIASES = {"cost/seconds": "cost/total_seconds"}


class Objective(Strict):
    metric: str = "accuracy"  # accuracy (mean over benchmarks) | data/<name> | cost/seconds (cost/*_seconds)
    benchmarks: list[str] = ["twins"]  # for accuracy: names in evaluate.benchmarks (synthetic ones)
    mode: Literal["max", "min"] = "max"
    allow_real: bool = False  # let a real (evaluation-only) benchmark drive the sweep: off on purpose

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        v = COST_ALIASES.get(v, v)
        if v != "accuracy" and v not in COST_METRICS and not (v.startswith("data/") and len(v) > 5):
            raise ValueError(
                f"objective metric is 'accuracy', 'data/<name>' or one of cost/seconds, {', '.join(COST_METRICS)}; "
                f"got {v!r}"
            )
        return v


class Validation(Strict):
    """The accuracy each trial reports after every epoch (ASHA stops trials on it)."""

    benchmark: str = "twins"  # a name in evaluate.benchmarks
    pairs: Annotated[int, Field(ge=0)] = 300  # score the first N pairs each epoch (0: all); enough to rank trials
    flip: bool | None = False  # mirrored images too (None: as evaluate.flip); off halves the cost


class Budget(Strict):
    trials: PositiveInt | None = None  # default: the grid's size (a spec without grid must set it)
    max_concurrent: PositiveInt = 2


class Asha(Strict):
    enabled: bool = True
    grace_period: PositiveInt = 1  # epochs every trial gets before it can be stopped
    max_t: PositiveInt | None = None  # None: the most epochs any trial trains (train.epochs)
    reduction_factor: Annotated[float, Field(gt=1)] = 2.0


class Resources(Strict):
    """What one trial holds. ``workers`` > 1 (or ``gpu: N``, an integer N > 1): the trial trains through Ray Train's
    ``TorchTrainer``, N workers of ``cpu`` CPUs (+ 1 GPU each on GPUs) beside the trial itself, which then holds
    ``cpu`` CPUs and no GPU (its dataset and evaluation run on CPU): :mod:`facefoundry.sweep.workers`."""

    cpu: Annotated[float, Field(gt=0)] = 1.0  # torch threads of the trial = max(1, int(cpu))
    gpu: Annotated[float, Field(ge=0)] | Literal["auto"] = "auto"  # auto: 1 when the Ray cluster has GPUs
    workers: PositiveInt | None = None  # training processes per trial; None: gpu when an integer > 1, else 1

    @model_validator(mode="after")
    def _workers_and_gpus(self) -> Resources:
        w, g = self.workers, self.gpu
        if w is not None and w > 1 and g != "auto" and g not in (0, w):
            raise ValueError(
                f"workers: {w} trains on {w} GPUs (one each) or on CPU: set gpu to {w}, 0 or auto (got {g:g})"
            )
        return self

    @property
    def train_workers(self) -> int:
        """How many processes train each trial (1: the trial's own, as before ``workers`` existed)."""
        if self.workers is not None:
            return self.workers
        g = self.gpu
        return int(g) if g != "auto" and g > 1 and float(g).is_integer() else 1


class Failure(Strict):
    max_failures: Annotated[int, Field(ge=-1)] = 1  # retries of a failing trial (-1: forever)


class Search(Strict):
    startup_trials: PositiveInt | None = None  # TPE's random start; None: min(10, max(2, trials // 2))


class InjectFailure(Strict):
    """For tests and drills: make matching trials raise (so failure handling can be watched)."""

    match: dict[str, Any] = {}  # raise when the trial's params contain all of these
    trials: list[Annotated[int, Field(ge=0)]] = []  # … or for these trial numbers (0 = the first created)
    attempts: PositiveInt | None = None  # fail only the first N attempts (then it succeeds); None: every one

    @model_validator(mode="after")
    def _some(self) -> InjectFailure:
        if not self.match and not self.trials:
            raise ValueError("inject_failure needs match: {key: value} or trials: [numbers]")
        return self


class Repeats(Strict):
    """After the search: the ``top_k`` best completed trials again with each extra FR seed (``base.seed``),
    full epochs; the winner is the best mean over the original run and its repeats (:mod:`.repeats`)."""

    top_k: PositiveInt = 1
    seeds: list[int] | PositiveInt  # the extra FR seeds, or how many to derive from base.seed
    level: Annotated[float, Field(gt=0, lt=1)] = 0.95  # confidence level of the t-interval of each mean


class SweepSpec(Strict):
    name: str | None = None
    description: str = ""
    params: str = "params.yaml"
    experiments: list[str] = []
    base: dict[str, Any] = {}
    space: dict[str, Dim]
    objective: Objective = Objective()
    validation: Validation = Validation()
    budget: Budget = Budget()
    asha: Asha = Asha()
    resources: Resources = Resources()
    failure: Failure = Failure()
    search: Search = Search()
    seed: int = 0
    realism: bool = False  # translate each trial's dataset with the realism stage before training
    address: str | None = None
    out: str | None = None  # default outputs/sweeps/<name>
    inject_failure: InjectFailure | None = None
    repeats: Repeats | None = None  # re-run the best trials with more FR seeds; pick the winner on their means
    # several objectives (``objective: [{...}, {...}]`` in the spec): Optuna's multi-objective TPE through Ray Tune
    # searches their Pareto front; the first is ``objective`` (ASHA's stops, repeats and the winner go by it)
    objectives: list[Objective] = []

    @model_validator(mode="before")
    @classmethod
    def _objective_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("objective"), list):
            given = data["objective"]
            if not given:
                raise ValueError("objective: an empty list; give one objective, or two or more")
            data = {**data, "objective": given[0], "objectives": given if len(given) > 1 else []}
        return data

    @model_validator(mode="after")
    def _objectives_agree(self) -> SweepSpec:
        if self.objectives:
            if self.objectives[0] != self.objective:
                raise ValueError("objectives: the first must be the objective")
            metrics = [o.metric for o in self.objectives]
            if len(set(metrics)) != len(metrics):
                raise ValueError(f"objective: {metrics}: each metric once")
        return self

    @property
    def all_objectives(self) -> list[Objective]:
        """Every objective, the primary first (one for a single-objective sweep)."""
        return list(self.objectives) or [self.objective]

    @property
    def objective_keys(self) -> list[str]:
        """The result keys a trial reports its objectives under: ``objective``, then ``objective_1``, …"""
        return ["objective"] + [f"objective_{i}" for i in range(1, len(self.all_objectives))]

    @field_validator("space", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: ({"type": "choice", "values": d} if isinstance(d, list) else d) for k, d in v.items()}
        return v

    @field_validator("space")
    @classmethod
    def _nonempty(cls, v: dict) -> dict:
        if not v:
            raise ValueError("the search space is empty: add at least one dimension")
        return v


@dataclass
class Sweep:
    """A checked spec: what ``run`` and every trial need (plain data, so it travels to Ray workers)."""

    spec: SweepSpec
    path: str
    name: str
    base_raw: dict  # params + experiments + base + --set, validated
    out: Path

    @property
    def dims(self) -> dict[str, Dim]:
        return self.spec.space

    @property
    def grid_size(self) -> int:
        return math.prod(len(d.choices()) for d in self.dims.values() if d.type == "grid")

    @property
    def has_grid(self) -> bool:
        return any(d.type == "grid" for d in self.dims.values())

    @property
    def trials(self) -> int:
        return self.spec.budget.trials or self.grid_size

    @property
    def base_config(self) -> Config:
        return Config.model_validate(self.base_raw)

    @property
    def base_seed(self) -> int:
        """The FR seed of every trial of the search (``base.seed`` of the base recipe)."""
        return self.base_config.base.seed

    def repeat_seeds(self) -> list[int]:
        """The extra FR seeds of ``repeats``: as given, or ``seeds: N`` derived from the base seed (deterministic,
        distinct, never the base seed); [] without repeats."""
        r = self.spec.repeats
        if r is None:
            return []
        if isinstance(r.seeds, list):
            return list(r.seeds)
        return [(self.base_seed + 7919 * (i + 1)) % 2**31 for i in range(r.seeds)]

    def digest(self) -> str:
        """What the sweep is (space, objective, recipe): a resumed sweep must match it. ``repeats`` is left out:
        a resumed sweep may add or change them (finished repeats are kept)."""
        blob = json.dumps(
            {
                "spec": self.spec.model_dump(
                    mode="json",
                    # an empty objectives list is a single-objective sweep, as before the list existed
                    exclude={
                        "address": True,
                        "out": True,
                        "description": True,
                        "repeats": True,
                        **({} if self.spec.objectives else {"objectives": True}),
                        # resources.workers unset: the digest of a sweep started before it existed
                        **({} if self.spec.resources.workers is not None else {"resources": {"workers"}}),
                    },
                ),
                "base": self.base_raw,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def param_space(self) -> dict[str, Any]:
        """Ray Tune search space, one entry per dimension (keys are the dotted params.yaml keys)."""
        from ray import tune

        space: dict[str, Any] = {}
        for key, d in self.dims.items():
            vals = [json.dumps(v) for v in d.choices()] if d.encoded else d.values
            if d.type == "uniform":
                space[key] = tune.uniform(*d.bounds())
            elif d.type == "loguniform":
                space[key] = tune.loguniform(*d.bounds())
            elif d.type in ("int", "randint"):
                low, high = d.int_bounds()
                space[key] = tune.randint(low, high + 1)  # Ray's upper bound is exclusive
            elif d.type == "choice":
                assert vals is not None  # Dim._check: a choice has values
                space[key] = tune.choice(vals)
            else:
                assert vals is not None  # Dim._check: a grid has values
                space[key] = tune.grid_search(vals)
        return space

    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
        """Trial params as Ray/Optuna hand them over → plain params.yaml values."""
        out = {}
        for key, given in params.items():
            if key not in self.dims:
                continue
            value = given.item() if hasattr(given, "item") else given  # numpy scalars
            out[key] = json.loads(value) if self.dims[key].encoded and isinstance(value, str) else value
        return out


def trial_sets(params: dict[str, Any]) -> list[str]:
    """A trial's params as ``--set`` expressions: ``{"train.lr": 0.05}`` → ``["train.lr=0.05"]``.

    The values are JSON, which ``--set`` reads as YAML, so a trial's config is exactly what the same
    ``facefoundry --set ...`` command line would give.
    """
    out = []
    for key, given in params.items():
        value = given.item() if hasattr(given, "item") else given
        out.append(f"{key}={json.dumps(value)}")
    return out
