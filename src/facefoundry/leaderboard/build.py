"""Building the leaderboard from run records: :func:`join_data_metrics` adds each training run's dataset metrics,
and :func:`build` filters the runs, picks the score and columns, groups repeats into rows (parameters other than
``VOLATILE`` make a recipe), ranks and judges them; the ranking rules are in the package docstring."""

from __future__ import annotations

from typing import Any

import numpy as np

from facefoundry.config import OUTPUT, RUNTIME, dotted_marked
from facefoundry.leaderboard.board import Leaderboard
from facefoundry.leaderboard.cost import COST_KEYS, _finite
from facefoundry.leaderboard.rows import (
    _JUDGE,
    ACC,
    AVERAGE,
    Row,
    benchmarks_of,
    lower_is_better,
    order_benchmarks,
    parse_metric,
    recipe_identity,
    recipe_of,
    regime_of,
    seed_of,
)
from facefoundry.leaderboard.significance import judge

# parameters that never make two runs different recipes: the seed (repeats are one row), and every setting of the
# training run's sections that the schema marks as how it runs or where it writes
VOLATILE = ("base.seed", *(k for k in dotted_marked(RUNTIME, OUTPUT) if k.startswith(("base.", "train."))))
MAX_COLUMNS = 8
DATA_KEYS = ("data/identities", "data/images")  # always shown when present


def join_data_metrics(train_runs: list[dict[str, Any]], validate_runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each training run gains the ``data/*`` metrics and the ``data.judge*`` tags (which encoder judged) of the
    validate run of its dataset version (same ``dataset.dvc_md5`` tag; the newest first in ``validate_runs``).
    Its own values win."""
    by_digest: dict[str, tuple[dict[str, float], dict[str, str]]] = {}
    for v in validate_runs:
        digest = v["tags"].get("dataset.dvc_md5")
        if digest and digest not in by_digest:
            metrics = {k: val for k, val in v["metrics"].items() if k.startswith("data/")}
            tags = {k: val for k, val in v["tags"].items() if k.startswith("data.judge")}
            by_digest[digest] = metrics, tags
    out = []
    for r in train_runs:
        metrics, tags = by_digest.get(r["tags"].get("dataset.dvc_md5", ""), ({}, {}))
        out.append(
            {**r, "metrics": {**metrics, **r["metrics"]}, "tags": {**tags, **r["tags"]}} if metrics or tags else r
        )
    return out


def build(
    runs: list[dict[str, Any]],
    benchmark: str | None = None,
    include_adhoc: bool = False,
    metric: str | None = None,
    alpha: float = 0.05,
    level: float = 0.95,
) -> Leaderboard:
    """Group and rank training runs; see the module docstring for the rules.

    ``metric``: ``average`` (the mean over the benchmarks every ranked run has), a benchmark name,
    or ``data/<name>``; ``None`` falls back to ``benchmark`` (``report.benchmark``), then ``average``.
    ``alpha`` (``report.alpha``): the significance level of the ties with the top row; ``level``
    (``report.level``): of the confidence intervals over seeds.
    """
    metric = parse_metric(metric, benchmark)
    on_data = metric.startswith("data/")
    chosen = None if metric == AVERAGE or on_data else metric
    excluded: dict[str, int] = {}

    def drop(why: str) -> None:
        excluded[why] = excluded.get(why, 0) + 1

    kept = []
    for r in runs:
        if not include_adhoc and r["tags"].get("facefoundry.adhoc") == "true":
            drop("ad-hoc runs (report.include_adhoc: true to rank them)")
        elif not benchmarks_of(r["metrics"]):
            drop("runs without an evaluation")
        elif chosen is not None and chosen not in benchmarks_of(r["metrics"]):
            drop(f"runs not evaluated on {chosen}")
        elif on_data and not np.isfinite(r["metrics"].get(metric, float("nan"))):
            drop(f"runs without {metric} (validate the dataset)")
        else:
            kept.append(r)
    sets = [benchmarks_of(r["metrics"]) for r in kept]
    common = sorted(set.intersection(*sets)) if sets else []
    if chosen is not None:
        benches = [chosen]
        basis = f"Ranked on {chosen} accuracy (10-fold mean; ± is the spread across repeated seeds)."
    elif on_data:
        benches = []
        basis = (
            f"Ranked on {metric} ({'lower' if lower_is_better(metric) else 'higher'} is better; "
            "± is the spread across repeated seeds)."
        )
    else:
        if not common and kept:  # no benchmark shared by all: rank the largest group sharing the commonest one
            counts: dict[str, int] = {}
            for s in sets:
                for b in s:
                    counts[b] = counts.get(b, 0) + 1
            best = max(sorted(counts), key=lambda b: counts[b])
            before = len(kept)
            kept = [r for r in kept if best in benchmarks_of(r["metrics"])]
            excluded[f"runs not evaluated on {best}"] = before - len(kept)
            common = sorted(set.intersection(*[benchmarks_of(r["metrics"]) for r in kept]))
        benches = common
        basis = (
            f"Ranked on the mean accuracy over {', '.join(benches)}, the benchmarks every ranked run has "
            "(± is the spread across repeated seeds)."
            if len(benches) > 1
            else f"Ranked on {benches[0] if benches else '—'} accuracy, the benchmark every ranked run has "
            "(± is the spread across repeated seeds)."
        )
    columns = order_benchmarks(set().union(*[benchmarks_of(r["metrics"]) for r in kept]) if kept else set())
    present = {k for r in kept for k in r["metrics"]}
    data_columns = [k for k in DATA_KEYS if k in present]
    judges = sorted({m.group(1) for k in present if (m := _JUDGE.match(k))})
    data_columns += [
        f"data/judge_{j}_{side}_mean"
        for j in judges
        for side in ("intra", "inter")
        if f"data/judge_{j}_{side}_mean" in present
    ]
    if on_data and metric not in data_columns:
        data_columns.append(metric)
    cost_columns = [k for k in COST_KEYS if any(_finite(r["metrics"].get(k)) for r in kept)]
    groups: dict[str, Row] = {}
    for r in kept:
        params, key = recipe_identity(r, VOLATILE)  # a distilled model and a label-trained one are never one row
        recipe = recipe_of(r)
        row = groups.setdefault(
            key,
            Row(recipe, key, [], params, [], {b: [] for b in columns}, [], {k: [] for k in data_columns}, []),
        )
        row.regime = regime_of(r)
        row.runs.append(r["run_id"])
        row.seeds.append(seed_of(r))
        exp = r.get("experiment")
        if exp and exp not in row.experiments:
            row.experiments.append(exp)
        m = r["metrics"]
        for b in columns:
            if b + ACC in m:
                row.per_benchmark[b].append(float(m[b + ACC]))
        if common:
            row.average.append(float(np.mean([float(m[b + ACC]) for b in common])))
        for k in data_columns:
            if k in m and np.isfinite(m[k]):
                row.data[k].append(float(m[k]))
        for k in cost_columns:
            if _finite(m.get(k)):
                row.cost.setdefault(k, []).append(float(m[k]))
        row.score.append(float(m[metric]) if on_data else float(np.mean([float(m[b + ACC]) for b in benches])))
    higher = not (on_data and lower_is_better(metric))
    rows = sorted(groups.values(), key=lambda row: ((-row.mean if higher else row.mean), row.recipe))
    judge(rows, alpha, level)
    keys = sorted({k for row in rows for k in row.params})
    # a parameter only some rows have (another generator's) is explained by data.generator: shown
    # only when it differs among the rows that have it
    differing = [k for k in keys if len({row.params[k] for row in rows if k in row.params}) > 1]
    differing.sort(key=lambda k: (k != "data.generator", k))
    if len(differing) > MAX_COLUMNS:
        basis += f" {len(differing) - MAX_COLUMNS} more differing parameters are in leaderboard.json."
    return Leaderboard(
        rows,
        benches,
        basis,
        differing[:MAX_COLUMNS],
        excluded,
        metric,
        columns,
        common,
        data_columns,
        higher,
        alpha,
        level,
        cost_columns,
    )
