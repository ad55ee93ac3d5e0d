"""Cost as a second objective: the ``cost/…_seconds`` metric keys the stages log and the leaderboard shows, their
join onto training runs through the dataset version (:func:`join_costs`), and the Pareto front of score against
total seconds (:func:`pareto_front`, :class:`Front`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

# cost, in wall-clock seconds, logged to MLflow only (never to DVC outputs: those stay byte-identical)
GENERATION_SECONDS = "cost/generation_seconds"  # the generate run: writing the dataset
GENERATOR_TRAINING_SECONDS = "cost/generator_training_seconds"  # the generate run: its generator's training (0: none)
TRAIN_SECONDS = "cost/train_seconds"  # the FR training run
DATASET_SECONDS = "cost/dataset_seconds"  # joined: generator training + generation of the run's dataset
TOTAL_SECONDS = "cost/total_seconds"  # joined: dataset + FR training
COST_KEYS = (DATASET_SECONDS, TRAIN_SECONDS, TOTAL_SECONDS)
COST_LABELS = {DATASET_SECONDS: "dataset s", TRAIN_SECONDS: "FR train s", TOTAL_SECONDS: "total s"}


T = TypeVar("T")


@dataclass
class Front(Generic[T]):
    """What :func:`pareto_front` returns: the front, every point it was chosen from, and what had no point."""

    rows: list[T]  # the non-dominated rows, cheapest first
    points: list[tuple[T, float, float]]  # (row, score, cost) of every row with both: the front's candidates
    without_cost: int = 0  # rows left out: no (finite) cost
    without_score: int = 0  # rows left out: no (finite) score

    def on_front(self, row: T) -> bool:
        return any(row is r for r in self.rows)


def _finite(v: float | None) -> bool:
    return v is not None and bool(np.isfinite(v))


def non_dominated(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Indices of the points no other point dominates, each axis maximised or minimised as ``modes`` says ("max",
    "min"). One point dominates another when it is at least as good on every axis and better on one, so points tied
    on every axis are kept together."""
    signs = [1.0 if m == "max" else -1.0 for m in modes]
    keyed = [[v * s for v, s in zip(p, signs, strict=True)] for p in points]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [i for i, p in enumerate(keyed) if not any(dominates(q, p) for q in keyed)]


def pareto_front(rows: Sequence[T], score: Callable[[T], float | None], cost: Callable[[T], float | None]) -> Front[T]:
    """The non-dominated rows: higher ``score``, lower ``cost``. A row is dominated when another is at least as
    good on both and strictly better on one, so rows tied on both stay on the front together, and of rows with
    the same score only the cheapest stay (of the same cost, only the best). Rows without a finite cost (or
    score) cannot be placed: they are left out and counted."""
    points: list[tuple[T, float, float]] = []
    without_cost = without_score = 0
    for r in rows:
        s, c = score(r), cost(r)
        if not _finite(c):
            without_cost += 1
        elif not _finite(s):
            without_score += 1
        else:
            assert s is not None and c is not None
            points.append((r, float(s), float(c)))
    keep = non_dominated([(s, c) for _, s, c in points], ("max", "min"))
    front = [points[i] for i in keep]
    front.sort(key=lambda p: (p[2], -p[1]))
    return Front([r for r, _, _ in front], points, without_cost, without_score)


def join_costs(train_runs: list[dict[str, Any]], generate_runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each training run gains ``cost/dataset_seconds`` (its generator's training + generation seconds, from the
    newest ``generate`` run in ``generate_runs``, newest first, that wrote the same dataset version: the same
    ``dataset.dvc_md5`` tag) and ``cost/total_seconds`` (that + its own ``cost/train_seconds``) where both are
    known. A dataset made by a learned generator whose training cost was not found has no dataset cost."""
    by_digest: dict[str, float] = {}
    for g in generate_runs:
        digest = g["tags"].get("dataset.dvc_md5")
        m = g["metrics"]
        if digest and digest not in by_digest:
            parts = [m.get(GENERATION_SECONDS), m.get(GENERATOR_TRAINING_SECONDS)]
            if all(_finite(p) for p in parts):
                by_digest[digest] = float(sum(p for p in parts if p is not None))
    out = []
    for r in train_runs:
        extra: dict[str, float] = {}
        dataset = by_digest.get(r["tags"].get("dataset.dvc_md5", ""))
        if dataset is not None:
            extra[DATASET_SECONDS] = dataset
            train = r["metrics"].get(TRAIN_SECONDS)
            if _finite(train):
                extra[TOTAL_SECONDS] = dataset + float(train)
        out.append({**r, "metrics": {**extra, **r["metrics"]}} if extra else r)
    return out


def _seconds(v: float | None) -> str:
    """Seconds, short: ``—`` unknown, ``42``, ``1.3k``."""
    if v is None:
        return "—"
    return f"{v:.0f}" if v < 10_000 else f"{v / 1000:.1f}k"
