"""Which recipe is best: training runs grouped into recipes and ranked on a stated metric.

Pure functions over plain run records (``{"run_id", "params", "metrics", "tags"}``, optionally
``"experiment"``), so the ranking rules are tested without MLflow:

- repeats of one recipe (same parameters, other seed) form one row: mean ± std and ``n``, also
  across MLflow experiments (the experiment is not a recipe parameter);
- only the parameters that differ between rows are shown;
- runs started outside a pipeline (ad hoc) are left out unless asked for;
- accuracies are never averaged over different benchmark sets: the score is one chosen
  benchmark, the mean over the benchmarks *every* ranked row has (``average``), or a data
  metric (``data/<name>``), and the caption says which;
- every benchmark any ranked run has is a column (``—`` where a row lacks it), then the
  average over the common set, then the key data metrics (identities, images, judge
  intra/inter-identity similarity).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np

from facefoundry.config import OUTPUT, RUNTIME, dotted_marked

# parameters that never make two runs different recipes: the seed (repeats are one row), and every setting of the
# training run's sections that the schema marks as how it runs or where it writes
VOLATILE = ("base.seed", *(k for k in dotted_marked(RUNTIME, OUTPUT) if k.startswith(("base.", "train."))))
ACC = "/accuracy"
MAX_COLUMNS = 8
AVERAGE = "average"
# benchmark columns in this order (the seeds' tables), then any other benchmark alphabetically
KNOWN_BENCHMARKS = ("twins", "real", "lfw", "cfp_fp", "agedb_30", "calfw", "cplfw")
LABELS = {"lfw": "LFW", "cfp_fp": "CFP-FP", "agedb_30": "AgeDB-30", "calfw": "CALFW", "cplfw": "CPLFW"}
DATA_KEYS = ("data/identities", "data/images")  # always shown when present
_JUDGE = re.compile(r"^data/judge_(.+)_(intra|inter)_mean$")


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

    @property
    def mean(self) -> float:
        return float(np.mean(self.score))

    @property
    def std(self) -> float:
        return float(np.std(self.score, ddof=1)) if len(self.score) > 1 else 0.0


@dataclass
class Leaderboard:
    rows: list[Row]
    benchmarks: list[str]  # what the score averages (one when a benchmark was chosen; none for a data metric)
    basis: str  # a sentence saying what the score is
    differing: list[str]  # parameters shown as columns
    excluded: dict[str, int] = field(default_factory=dict)  # why runs were left out → count
    metric: str = AVERAGE  # average | <benchmark> | data/<name>
    columns: list[str] = field(default_factory=list)  # benchmark columns
    average_over: list[str] = field(default_factory=list)  # the benchmarks every ranked run has
    data_columns: list[str] = field(default_factory=list)
    higher_is_better: bool = True

    @property
    def multi_experiment(self) -> bool:
        return len({e for r in self.rows for e in r.experiments}) > 1

    @property
    def ranked_column(self) -> str:
        """The header of the column the rows are sorted on."""
        if self.metric == AVERAGE:
            return "average %"
        if self.metric.startswith("data/"):
            return data_label(self.metric)
        return f"{label(self.metric)} %"

    def best(self) -> tuple[Row, str, float]:
        """The top row, its best run and that run's score (what ``promote`` registers)."""
        if not self.rows:
            raise ValueError("empty leaderboard")
        row = self.rows[0]
        pick = int(np.argmax(row.score) if self.higher_is_better else np.argmin(row.score))
        return row, row.runs[pick], row.score[pick]

    def table(self, top: int | None = None) -> tuple[list[str], list[list[str]]]:
        multi = self.multi_experiment
        header = [
            "rank",
            "recipe",
            "n",
            *(["experiment"] if multi else []),
            *[f"{label(b)} %" for b in self.columns],
            *(["average %"] if self.average_over else []),
            *[data_label(k) for k in self.data_columns],
            *[short(p) for p in self.differing],
        ]
        out = []
        for i, r in enumerate(self.rows[:top] if top else self.rows, 1):
            cells = [str(i), r.recipe, str(len(r.runs)), *([", ".join(r.experiments)] if multi else [])]
            cells += [pm(r.per_benchmark[b]) if r.per_benchmark.get(b) else "—" for b in self.columns]
            cells += [pm(r.average)] if self.average_over else []
            cells += [_fmt(r.data.get(k, [])) for k in self.data_columns]
            cells += [r.params.get(p, "—") for p in self.differing]
            out.append(cells)
        return header, out

    def notes(self) -> list[str]:
        notes = [self.basis]
        if self.average_over and self.metric != AVERAGE:
            notes.append(
                f"average: the mean over {', '.join(label(b) for b in self.average_over)}, "
                "the benchmarks every ranked run has."
            )
        if any(_JUDGE.match(k) for k in self.data_columns):
            notes.append(
                "intra/inter: mean cosine similarity of same-/different-identity image pairs by the judge "
                "encoder (validate); a wider gap is a cleaner dataset."
            )
        return notes

    def markdown(self, top: int | None = None) -> str:
        header, rows = self.table(top)
        ranked = self.ranked_column
        head = [f"**{h}**" if h == ranked else h for h in header]
        md = "\n\n".join(self.notes()) + "\n\n| " + " | ".join(head) + " |\n|" + "---|" * len(header) + "\n"
        md += "".join("| " + " | ".join(r) + " |\n" for r in rows)
        if self.excluded:
            md += "\nLeft out: " + ", ".join(f"{n} {why}" for why, n in self.excluded.items()) + ".\n"
        return md

    def html(self, title: str, top: int | None = None) -> str:
        """A standalone page (no scripts, no network): the same table as :meth:`markdown`."""
        header, rows = self.table(top)
        ranked = self.ranked_column
        esc = html.escape
        th = "".join(f"<th{' class=ranked' if h == ranked else ''}>{esc(h)}</th>" for h in header)
        body = "".join(
            "<tr>"
            + "".join(f"<td{' class=ranked' if h == ranked else ''}>{esc(c)}</td>" for h, c in zip(header, r))
            + "</tr>\n"
            for r in rows
        )
        notes = "".join(f"<p>{esc(n)}</p>\n" for n in self.notes())
        left = (
            "<p>Left out: " + esc(", ".join(f"{n} {why}" for why, n in self.excluded.items())) + ".</p>\n"
            if self.excluded
            else ""
        )
        style = (
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:14px}"
            "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#eee}"
            ".ranked{font-weight:bold;background:#eef6ff}"
        )
        return (
            f"<!doctype html>\n<html><head><meta charset=utf-8><title>{esc(title)}</title>"
            f"<style>{style}</style></head>\n<body><h1>{esc(title)}</h1>\n{notes}"
            f"<table><thead><tr>{th}</tr></thead>\n<tbody>\n{body}</tbody></table>\n{left}</body></html>\n"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "basis": self.basis,
            "metric": self.metric,
            "benchmarks": self.benchmarks,
            "columns": self.columns,
            "average_over": self.average_over,
            "data_columns": self.data_columns,
            "differing": self.differing,
            "excluded": self.excluded,
            "higher_is_better": self.higher_is_better,
            "rows": [
                {
                    "recipe": r.recipe,
                    "runs": r.runs,
                    "experiments": r.experiments,
                    "params": r.params,
                    "score_mean": r.mean,
                    "score_std": r.std,
                    "per_benchmark": r.per_benchmark,
                    "average": r.average,
                    "data": r.data,
                }
                for r in self.rows
            ],
        }


def pm(values: list[float]) -> str:
    """``mean ± std`` in percent (``±`` only for repeats)."""
    m = 100 * float(np.mean(values))
    return f"{m:.2f} ± {100 * float(np.std(values, ddof=1)):.2f}" if len(values) > 1 else f"{m:.2f}"


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


def join_data_metrics(train_runs: list[dict[str, Any]], validate_runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each training run gains the ``data/*`` metrics of the validate run of its dataset version
    (same ``dataset.dvc_md5`` tag; the newest first in ``validate_runs``). Its own values win."""
    by_digest: dict[str, dict[str, float]] = {}
    for v in validate_runs:
        digest = v["tags"].get("dataset.dvc_md5")
        if digest and digest not in by_digest:
            by_digest[digest] = {k: val for k, val in v["metrics"].items() if k.startswith("data/")}
    out = []
    for r in train_runs:
        extra = by_digest.get(r["tags"].get("dataset.dvc_md5", ""), {})
        out.append({**r, "metrics": {**extra, **r["metrics"]}} if extra else r)
    return out


def build(
    runs: list[dict[str, Any]], benchmark: str | None = None, include_adhoc: bool = False, metric: str | None = None
) -> Leaderboard:
    """Group and rank training runs; see the module docstring for the rules.

    ``metric``: ``average`` (the mean over the benchmarks every ranked run has), a benchmark name,
    or ``data/<name>``; ``None`` falls back to ``benchmark`` (``report.benchmark``), then ``average``.
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
    groups: dict[str, Row] = {}
    for r in kept:
        params = {k: str(v) for k, v in r["params"].items() if k not in VOLATILE}
        key = json.dumps(params, sort_keys=True)
        recipe = recipe_of(r)
        row = groups.setdefault(
            key, Row(recipe, key, [], params, [], {b: [] for b in columns}, [], {k: [] for k in data_columns}, [])
        )
        row.runs.append(r["run_id"])
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
        row.score.append(float(m[metric]) if on_data else float(np.mean([float(m[b + ACC]) for b in benches])))
    higher = not (on_data and lower_is_better(metric))
    rows = sorted(groups.values(), key=lambda row: ((-row.mean if higher else row.mean), row.recipe))
    keys = sorted({k for row in rows for k in row.params})
    # a parameter only some rows have (another generator's) is explained by data.generator: shown
    # only when it differs among the rows that have it
    differing = [k for k in keys if len({row.params[k] for row in rows if k in row.params}) > 1]
    differing.sort(key=lambda k: (k != "data.generator", k))
    if len(differing) > MAX_COLUMNS:
        basis += f" {len(differing) - MAX_COLUMNS} more differing parameters are in leaderboard.json."
    return Leaderboard(
        rows, benches, basis, differing[:MAX_COLUMNS], excluded, metric, columns, common, data_columns, higher
    )
