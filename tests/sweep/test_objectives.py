"""A sweep's objectives, one or several: each trial's values and the Pareto front of the finished trials. Pure."""

from __future__ import annotations

import pytest

from facefoundry.leaderboard import non_dominated
from facefoundry.sweep.objectives import front_table, objective_values, pareto_rows, trial_cost, values_of
from facefoundry.sweep.spec_model import SweepSpec

SPACE = {"train.lr": {"type": "loguniform", "low": 0.01, "high": 0.2}}


def _spec(*objectives: dict) -> SweepSpec:
    return SweepSpec.model_validate({"space": SPACE, "objective": list(objectives)})


ACC_COST = _spec({"metric": "accuracy", "benchmarks": ["twins", "real"]}, {"metric": "cost/seconds", "mode": "min"})


def test_values_accuracy_data_and_cost():
    cost = trial_cost(30.0, 12.5)
    assert cost == {"cost/dataset_seconds": 30.0, "cost/train_seconds": 12.5, "cost/total_seconds": 42.5}
    spec = _spec(
        {"metric": "accuracy", "benchmarks": ["twins", "real"]},
        {"metric": "cost/seconds", "mode": "min"},
        {"metric": "data/identities", "mode": "min"},
    )
    metrics = {"twins/accuracy": 0.8, "real/accuracy": 0.6}
    assert objective_values(spec.all_objectives, metrics, None, {"identities": 50}, cost) == [
        pytest.approx(0.7),
        42.5,
        50.0,
    ]
    # during training: the epoch's validation accuracy stands for every accuracy objective
    assert objective_values(spec.all_objectives, None, 0.55, {"identities": 50}, cost)[0] == 0.55


def _row(trial: str, number: int, acc: float | None, cost: float, status: str = "completed") -> dict:
    return {"trial": trial, "number": number, "status": status, "params": {"train.lr": 0.1}, "objectives": [acc, cost]}


def test_front_keeps_what_nothing_beats_on_both():
    rows = [
        _row("a", 0, 0.70, 100.0),  # best accuracy, dearest
        _row("b", 1, 0.65, 40.0),  # cheaper, a little worse: on the front
        _row("c", 2, 0.60, 60.0),  # worse and dearer than b: dominated
        _row("d", 3, 0.65, 40.0),  # ties b on both: both stay
        _row("e", 4, 0.99, 1.0, status="stopped"),  # stopped early: not a candidate
        _row("f", 5, None, 5.0),  # no accuracy: cannot be placed
        _row("g", 6, 0.50, 10.0),  # cheapest: on the front
    ]
    front = pareto_rows(ACC_COST, rows, ("completed",))
    assert [r["trial"] for r in front] == ["a", "b", "d", "g"]  # best primary objective first
    assert values_of(ACC_COST, rows[5]) is None
    table = front_table(ACC_COST, front, ["train.lr"])
    assert (
        "| trial | lr | accuracy (max) | cost/total_seconds (min) |" in table
        and "| g | 0.1 | 0.5000 | 10.0000 |" in table
    )


def test_non_dominated_in_any_number_of_dimensions_and_modes():
    points = [(1.0, 1.0, 1.0), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), (2.0, 1.0, 1.0)]
    assert non_dominated(points, ("max", "max", "max")) == [1, 3]
    assert non_dominated(points, ("min", "min", "min")) == [2]
    assert non_dominated(points, ("max", "min", "min")) == [1, 2, 3]
    assert non_dominated([(1.0, 5.0), (2.0, 6.0)], ("max", "min")) == [0, 1]
    assert non_dominated([], ("max",)) == []
