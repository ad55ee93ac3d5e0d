"""A sweep's objectives, one or several: each trial's values (accuracy, a data metric, a cost in seconds) and, for
several, the Pareto front of the finished trials. Pure: no I/O, no Ray.

A multi-objective spec (``objective: [{metric: accuracy, mode: max}, {metric: cost/seconds, mode: min}]``) reports
the first as ``objective`` (ASHA, repeats and the winner go by it) and the others as ``objective_1``, …; Optuna's
multi-objective TPE sampler gets them all through Ray Tune's ``OptunaSearch``.
"""

from __future__ import annotations

from typing import Any

from facefoundry.leaderboard import non_dominated
from facefoundry.sweep.spec_model import Objective, SweepSpec


def trial_cost(dataset_seconds: float, train_seconds: float) -> dict[str, float]:
    """A trial's cost metrics: its dataset's making, its FR training (so far), and both."""
    return {
        "cost/dataset_seconds": dataset_seconds,
        "cost/train_seconds": train_seconds,
        "cost/total_seconds": dataset_seconds + train_seconds,
    }


def missing_data_objectives(objectives: list[Objective], data: dict) -> list[str]:
    """The data-metric objectives the dataset's data metrics lack."""
    return [o.metric for o in objectives if o.metric.startswith("data/") and o.metric.removeprefix("data/") not in data]


def objective_values(
    objectives: list[Objective], metrics: dict | None, val_accuracy: float | None, data: dict, cost: dict[str, float]
) -> list[float]:
    """Each objective's value. Accuracy: the mean over its benchmarks of the evaluation's ``metrics``, or during
    training (``metrics`` None) the epoch's validation accuracy; a data metric; a cost in seconds."""
    out = []
    for o in objectives:
        if o.metric == "accuracy":
            if metrics is None:
                assert val_accuracy is not None
                out.append(float(val_accuracy))
            else:
                out.append(sum(float(metrics[f"{b}/accuracy"]) for b in o.benchmarks) / len(o.benchmarks))
        elif o.metric in cost:
            out.append(float(cost[o.metric]))
        else:
            out.append(float(data[o.metric.removeprefix("data/")]))
    return out


def values_of(spec: SweepSpec, row: dict[str, Any]) -> list[float] | None:
    """A collected row's objective values (``row["objectives"]``), None unless every one is a finite number."""
    vals = row.get("objectives") or []
    if len(vals) != len(spec.all_objectives):
        return None
    if not all(isinstance(v, (int, float)) and v == v and abs(v) != float("inf") for v in vals):
        return None
    return [float(v) for v in vals]


def pareto_rows(spec: SweepSpec, rows: list[dict[str, Any]], statuses: tuple[str, ...]) -> list[dict[str, Any]]:
    """The rows (of the given statuses, with every objective) that no other such row dominates, ordered by the
    primary objective, best first."""
    scored = [(r, v) for r in rows if r.get("status") in statuses for v in [values_of(spec, r)] if v is not None]
    modes = [o.mode for o in spec.all_objectives]
    keep = non_dominated([v for _, v in scored], modes)
    front = [scored[i] for i in keep]
    sign = -1.0 if modes[0] == "max" else 1.0
    front.sort(key=lambda rv: (sign * rv[1][0], rv[0].get("number") if rv[0].get("number") is not None else 1 << 30))
    return [r for r, _ in front]


def fmt_value(v: Any) -> str:
    """An objective's value in a table: accuracies to 4 decimals, seconds (≥ 100) whole, ``–`` when missing."""
    if not isinstance(v, (int, float)):
        return "–"
    return f"{v:.4f}" if abs(v) < 100 else f"{v:.0f}"


def front_table(spec: SweepSpec, front: list[dict[str, Any]], keys: list[str]) -> str:
    """The front as markdown: trial, its params, every objective."""
    names = [f"{o.metric} ({o.mode})" for o in spec.all_objectives]
    head = ["trial", *[k.rsplit(".", 1)[-1] for k in keys], *names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in front:
        params = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in (r["params"].get(k, "") for k in keys)]
        vals = [fmt_value(v) for v in values_of(spec, r) or []]
        lines.append("| " + " | ".join([r["trial"], *params, *vals]) + " |")
    return "\n".join(lines) + "\n"
