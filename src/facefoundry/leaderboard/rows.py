"""The leaderboard's rows and names: a recipe's runs grouped into one :class:`Row` (its seeds, samples, mean and
std), and the pure helpers that name and parse what the rows show: benchmark labels, data-metric labels and
direction, the recipe and seed of a run, the benchmarks a run has, their order, and the ``--metric`` argument."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np

from facefoundry.leaderboard.cost import TOTAL_SECONDS
from facefoundry.stats import Summary, TTest
from facefoundry.train import regime as regimes
from facefoundry.train.regime import regime

ACC = "/accuracy"
AVERAGE = "average"
# benchmark columns in this order (the seeds' tables), then any other benchmark alphabetically
KNOWN_BENCHMARKS = ("twins", "real", "lfw", "cfp_fp", "agedb_30", "calfw", "cplfw")
LABELS = {"lfw": "LFW", "cfp_fp": "CFP-FP", "agedb_30": "AgeDB-30", "calfw": "CALFW", "cplfw": "CPLFW"}
_JUDGE = re.compile(r"^data/judge_(.+)_(intra|inter)_mean$")
LABELS_REGIME = regimes.LABELS  # the regime of a run that learned from its labels
REGIME_TAG = "facefoundry.regime"  # what the FR model learned from: labels | distill:<teacher> | both:<teacher>
# parameters the regime column says in one word
REGIME_PARAMS = ("train.objective", "train.teacher", "train.distill.")


def label(bench: str) -> str:
    """``cfp_fp`` → ``CFP-FP``: the names the seeds' tables use."""
    return LABELS.get(bench, bench)


def lower_is_better(metric: str) -> bool:
    """Data metrics where less is better: duplicates, converted images, inter-identity similarity."""
    name = metric.removeprefix("data/")
    return name.startswith(("duplicate_", "non_rgb", "converted_")) or name.endswith("inter_mean")


def data_label(key: str) -> str:
    m = _JUDGE.match(key)
    return f"{m.group(2)} ({m.group(1)})" if m else key.removeprefix("data/")


def _fmt(values: list[float]) -> str:
    if not values:
        return "—"
    m = float(np.mean(values))
    return f"{m:.0f}" if float(m).is_integer() and abs(m) >= 1 else f"{m:.3f}"


def seed_of(run: dict[str, Any]) -> int | None:
    """The run's FR seed (``base.seed``), None when it has none (e.g. the report stage's metrics files)."""
    try:
        return int(str(run["params"].get("base.seed")))
    except ValueError:
        return None


@dataclass
class Row:
    recipe: str
    key: str
    runs: list[str]
    params: dict[str, str]
    score: list[float]  # the ranked value, one per run
    per_benchmark: dict[str, list[float]] = field(default_factory=dict)  # every column; the runs that have it
    average: list[float] = field(default_factory=list)  # per run: mean over Leaderboard.average_over
    data: dict[str, list[float]] = field(default_factory=dict)  # data column → the runs' values
    experiments: list[str] = field(default_factory=list)
    seeds: list[int | None] = field(default_factory=list)  # per run: its base.seed (None: none logged)
    summary: Summary | None = None  # of samples, at Leaderboard.level (set by build)
    vs_top: TTest | None = None  # the test against the top row; None for the top row and n=1 rows
    tie: bool | None = None  # not significantly different from the top row; None: untested (or the top row)
    marker: str = ""  # the "vs top" cell: top | ≈ p=… | p=… | n=1: untested [†] | untested (…)
    cost: dict[str, list[float]] = field(default_factory=dict)  # cost key → the values of the runs that have it
    regime: str = LABELS_REGIME  # labels | distill:<teacher> | both:<teacher> (part of the row's key)

    def seconds(self, key: str = TOTAL_SECONDS) -> float | None:
        """The mean of a cost (``cost/…_seconds``) over the row's runs that have it; None when none has."""
        values = self.cost.get(key) or []
        return float(np.mean(values)) if values else None

    @property
    def by_seed(self) -> dict[int, float]:
        """Seed → the ranked value, by seed; a seed run twice counts once: its first run here, the newest where
        the runs come newest first (as from MLflow, and as ``promote``'s evidence counts it). Runs without a
        seed are left out."""
        values: dict[int, float] = {}
        for seed, v in zip(self.seeds, self.score):
            if seed is not None and seed not in values:
                values[seed] = v
        return {s: values[s] for s in sorted(values)}

    @property
    def unseeded(self) -> list[float]:
        """The ranked values of runs that logged no seed: one independent value each."""
        return [v for seed, v in zip(self.seeds, self.score) if seed is None]

    @property
    def samples(self) -> list[float]:
        """One value per seed (then per unseeded run): what n, mean, std, the interval and the tests read."""
        if len(self.seeds) != len(self.score):  # a row built without seeds: every run counts
            return list(self.score)
        return [*self.by_seed.values(), *self.unseeded]

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples))

    @property
    def std(self) -> float:
        x = self.samples
        return float(np.std(x, ddof=1)) if len(x) > 1 else 0.0


def short(param: str) -> str:
    """``train.backbone.width`` → ``backbone.width``: columns stay narrow."""
    parts = param.split(".")
    return ".".join(parts[-2:]) if len(parts) > 2 else parts[-1]


def benchmarks_of(metrics: dict[str, float]) -> set[str]:
    return {
        k[: -len(ACC)]
        for k in metrics
        if k.endswith(ACC) and not k.startswith(("train/", "data/")) and "/" not in k[: -len(ACC)]
    }


def recipe_of(run: dict[str, Any]) -> str:
    """The run's recipe name: its tag, else ``train.recipe``, else its dataset folder's name (as training
    names it), else its generator."""
    tags: dict[str, str] = run["tags"]
    params: dict[str, str] = run["params"]
    named = tags.get("facefoundry.recipe") or params.get("train.recipe")
    if named and named != "None":
        return named
    path = tags.get("dataset.path") or params.get("train.dataset")
    return PurePath(path).name if path else params.get("data.generator") or "?"


def regime_of(run: dict[str, Any]) -> str:
    """What the run's FR model learned from: its tag, else its ``train.objective`` / ``train.teacher`` params, else
    (runs from before distillation existed) the labels."""
    tagged = run["tags"].get(REGIME_TAG)
    if tagged:
        return str(tagged)
    return regime(
        str(run["params"].get("train.objective", LABELS_REGIME)), str(run["params"].get("train.teacher", "?"))
    )


def recipe_identity(run: dict[str, Any], volatile: tuple[str, ...]) -> tuple[dict[str, str], str]:
    """The run's recipe parameters (all but ``volatile`` and the regime's own) and the key its row is grouped by:
    those parameters and the regime — with the distillation settings when the regime is not the labels, so a
    label-trained run from before ``train.objective`` existed and one from after are one recipe."""
    params = {k: str(v) for k, v in run["params"].items() if k not in volatile}
    own = {k: v for k, v in params.items() if k.startswith(REGIME_PARAMS)}
    shown = {k: v for k, v in params.items() if k not in own}
    regime = regime_of(run)
    keyed = {**shown, "regime": regime, **(own if regime != LABELS_REGIME else {})}
    return shown, json.dumps(keyed, sort_keys=True)


def order_benchmarks(names: set[str] | list[str]) -> list[str]:
    known = [b for b in KNOWN_BENCHMARKS if b in names]
    return known + sorted(set(names) - set(known))


def parse_metric(metric: str | None, benchmark: str | None = None) -> str:
    """``None`` → ``report.benchmark`` or ``average``; ``twins/accuracy`` → ``twins``; ``data/x`` stays."""
    m = (metric or benchmark or AVERAGE).strip()
    if m.startswith("data/"):
        if m == "data/":
            raise ValueError("--metric data/<name> needs a name, e.g. data/identities")
        return m
    return m.removesuffix(ACC) or AVERAGE
