"""Warm starts: earlier trials, read back from MLflow, handed to a new sweep's Optuna searcher.

``facefoundry sweep SPEC --warm-start EXPERIMENT`` reads the trial runs (``facefoundry.role: trial``) of
that MLflow experiment, in the sweep's own tracking store, and keeps the compatible ones: FINISHED (a
completed trial, or one ASHA stopped: its objective is then its last report, which is what Ray Tune told
Optuna in the earlier sweep), with an ``objective`` metric, under a sweep run with the same objective
(metric, mode and, for ``accuracy``, benchmarks), exactly the spec's space keys, every value inside its
dimension (a range's ends included; a choice's value among its values). Their params and objectives go to
Ray Tune's ``OptunaSearch(points_to_evaluate=..., evaluated_rewards=...)``, which adds them to the Optuna
study as completed trials (``add_evaluated_point``): they are not run again, they do not count against the
budget, and TPE's random start (``n_startup_trials``) counts them. A space with a ``grid`` dimension runs on
Ray's basic variant generator, which has no history to feed: refused.

The rest of the recipe (``params.yaml``, ``base``) is not compared: an experiment whose trials trained on
another recipe feeds objectives of that recipe.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from facefoundry.errors import FaceFoundryError
from facefoundry.stages.common import log
from facefoundry.sweep.spec_model import Dim, Sweep
from facefoundry.tracking.base import absolute_uri

Point = tuple[dict[str, Any], float]  # (params.yaml values of the space's keys, the trial's objective)

WARM_TAG = "facefoundry.warm_start"  # on the sweep's parent run: the experiment the points came from
WARM_POINTS_TAG = "facefoundry.warm_start_points"  # … how many were fed to the searcher
WARM_SKIPPED_TAG = "facefoundry.warm_start_skipped"  # … how many trial runs were left out, and why


@dataclass
class WarmStart:
    experiment: str
    points: list[Point] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # reason → trial runs

    def summary(self) -> str:
        return ", ".join(f"{n} {why}" for why, n in self.skipped.most_common())


def _logged(value: Any) -> str:
    """A value as a trial run logs it as a param (``TrialRun._log_params``)."""
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def decode_value(dim: Dim, text: str) -> Any:
    """A logged param back to the value the spec's dimension gives; ValueError (why) when it is not one."""
    if dim.type in ("choice", "grid"):
        for v in dim.choices():
            if _logged(v) == text:
                return v
        raise ValueError("not among the values")
    x: int | float
    low: int | float
    high: int | float
    if dim.type in ("int", "randint"):
        low, high = dim.int_bounds()
        try:
            x = int(text)
        except ValueError:
            raise ValueError("not an integer") from None
    else:
        low, high = dim.bounds()
        try:
            x = float(text)
        except ValueError:
            raise ValueError("not a number") from None
        if not math.isfinite(x):
            raise ValueError("not a number")
    if not low <= x <= high:
        raise ValueError("outside the range")
    return x


def _objective(metric: str, mode: str, benchmarks: str) -> tuple[str, str, str]:
    """What makes two sweeps' objectives the same: the metric, the mode, and for accuracy its benchmarks."""
    return metric, mode, benchmarks if metric == "accuracy" else ""


def trial_point(sweep: Sweep, run: Any, parents: dict[str, Any]) -> Point:
    """One trial run as a point of this sweep's space; ValueError with the reason it is not compatible."""
    if run.info.status != "FINISHED":
        raise ValueError(f"run {run.info.status}")
    objective = run.data.metrics.get("objective")
    if objective is None or not math.isfinite(objective):
        raise ValueError("no objective")
    parent = parents.get(run.data.tags.get("mlflow.parentRunId", ""))
    if parent is None:
        raise ValueError("no sweep run above it")
    o = sweep.spec.objective
    theirs = parent.data.params
    if _objective(
        theirs.get("sweep.objective", ""), theirs.get("sweep.mode", ""), theirs.get("sweep.objective_benchmarks", "")
    ) != _objective(o.metric, o.mode, ",".join(o.benchmarks)):
        raise ValueError("another objective or mode")
    swept = {k.removeprefix("sweep."): v for k, v in run.data.params.items() if k.startswith("sweep.")}
    if set(swept) != set(sweep.dims):
        raise ValueError("other space keys")
    params = {}
    for key, dim in sweep.dims.items():
        try:
            params[key] = decode_value(dim, swept[key])
        except ValueError as exc:  # noqa: PERF203 - the first value outside the space ends the loop
            raise ValueError(f"{key} {exc}") from None
    return params, float(objective)


def _all_runs(client: Any, experiment_id: str, query: str) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], query, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _tracking_uri(sweep: Sweep) -> str:
    return absolute_uri(os.environ.get("MLFLOW_TRACKING_URI") or sweep.base_config.base.tracking_uri)


def check(sweep: Sweep) -> None:
    if sweep.spec.objectives:
        raise FaceFoundryError(
            f"--warm-start feeds single-objective sweeps only: {sweep.path} has {len(sweep.spec.objectives)} "
            "objectives (Optuna's multi-objective study would need every earlier trial's values of each)"
        )
    if sweep.has_grid:
        grid = ", ".join(k for k, d in sweep.dims.items() if d.type == "grid")
        raise FaceFoundryError(
            f"--warm-start needs a non-grid space: {sweep.path} has grid dimension(s) {grid}, run by Ray's basic "
            "variant generator, which takes no earlier trials (make them choice dimensions to search with Optuna)"
        )


def load(experiment: str, sweep: Sweep, uri: str | None = None) -> WarmStart:
    """The compatible trials of an MLflow experiment (name, or id) in the sweep's tracking store, logged."""
    from facefoundry.tracking.base import _mlflow

    check(sweep)
    uri = uri or _tracking_uri(sweep)
    client = _mlflow().MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None and experiment.isdigit():
        try:
            exp = client.get_experiment(experiment)
        except Exception:
            exp = None
    if exp is None:
        raise FaceFoundryError(f"--warm-start {experiment}: no such MLflow experiment in {uri}")
    parents = {r.info.run_id: r for r in _all_runs(client, exp.experiment_id, "tags.`facefoundry.role` = 'sweep'")}
    warm = WarmStart(experiment)
    trial_runs = _all_runs(client, exp.experiment_id, "tags.`facefoundry.role` = 'trial'")
    # a repeat (the same params with another FR seed) is not a point of the search
    for run in [r for r in trial_runs if not r.data.tags.get("facefoundry.repeat_of")]:
        try:
            warm.points.append(trial_point(sweep, run, parents))
        except ValueError as exc:  # noqa: PERF203 - one reason per incompatible trial run
            warm.skipped[str(exc)] += 1
    o = sweep.spec.objective
    best = ""
    if warm.points:
        pick = max if o.mode == "max" else min
        best = f" (best {o.metric} {pick(v for _, v in warm.points):.4f})"
    skipped = f"; {sum(warm.skipped.values())} skipped: {warm.summary()}" if warm.skipped else ""
    log(
        f"warm start from experiment {experiment!r}: {len(warm.points)} earlier trial(s) fed to Optuna{best}{skipped}"
        + ("" if warm.points else "; starting without history")
    )
    return warm


def history(experiment: str, sweep: Sweep) -> list[Point]:
    """``(params, objective)`` of the compatible trials of ``experiment`` (see :func:`load`)."""
    return load(experiment, sweep).points


def searcher_points(sweep: Sweep, points: list[Point]) -> tuple[list[dict[str, Any]], list[float]]:
    """Points as Ray Tune's search space holds them (choices that are not plain scalars as JSON strings, see
    ``Sweep.param_space``), and their rewards: ``points_to_evaluate`` and ``evaluated_rewards``."""
    configs = [{k: json.dumps(v) if sweep.dims[k].encoded else v for k, v in params.items()} for params, _ in points]
    return configs, [value for _, value in points]


def record(client: Any, run_id: str, warm: WarmStart) -> None:
    """What the sweep's parent run says about its warm start."""
    from mlflow.entities import RunTag

    tags = {
        WARM_TAG: warm.experiment,
        WARM_POINTS_TAG: str(len(warm.points)),
        WARM_SKIPPED_TAG: f"{sum(warm.skipped.values())}" + (f": {warm.summary()}" if warm.skipped else ""),
    }
    client.log_batch(run_id, tags=[RunTag(k, v[:5000]) for k, v in tags.items()])
