"""Which recipe is best: training runs grouped into recipes and ranked on a stated metric.

Pure functions over plain run records (``{"run_id", "params", "metrics", "tags"}``, optionally
``"experiment"``), so the ranking rules are tested without MLflow:

- repeats of one recipe (same parameters, other seed) form one row, also across MLflow experiments
  (the experiment is not a recipe parameter): ``n`` FR seeds (``base.seed``; a seed run twice counts once, its
  newest run, as ``promote``'s evidence counts it: a rerun is no new draw of the seed's noise; a run
  without a seed counts as one),
  the ranked score's mean ± sample std over them and its t-based confidence interval (``report.level``),
  by :func:`facefoundry.stats.summarise`; the seed → value pairs stay on the row (:attr:`Row.by_seed`);
- one FR run moves by up to 3 points with its seed, so every row is tested against the top row
  (:func:`facefoundry.stats.versus`, two-sided: the paired t-test over the seeds both ran where at least
  two are shared, else Welch's): a difference not significant at ``report.alpha`` is marked ``≈``
  (statistically indistinguishable from the top), a significant one by its p-value; a row with one
  seed (or a one-seed top row) cannot be tested and says so (``n=1: untested``);
- rows are ranked by their mean, whatever their ``n``: sorting repeated rows first would put a lower
  mean above a higher one and make the order depend on how often a recipe was run. Instead a one-seed
  row ranked above a repeated one is marked ``†`` and a footnote names it: its place rests on a single
  run. The top row is the mean's winner (what ``promote`` takes), ties and daggers included;
- only the parameters that differ between rows are shown;
- runs started outside a pipeline (ad hoc) are left out unless asked for;
- accuracies are never averaged over different benchmark sets: the score is one chosen
  benchmark, the mean over the benchmarks *every* ranked row has (``average``), or a data
  metric (``data/<name>``), and the caption says which;
- every benchmark any ranked run has is a column (``—`` where a row lacks it), then the
  average over the common set, then the key data metrics (identities, images, judge
  intra/inter-identity similarity);
- cost is a second objective: each training run's ``cost/train_seconds`` and, through its dataset version,
  the ``cost/generation_seconds`` + ``cost/generator_training_seconds`` of the ``generate`` run that wrote
  that dataset (:func:`join_costs`, on the ``dataset.dvc_md5`` tag both runs carry) are columns where
  known (the mean over the row's runs), and :func:`pareto_front` picks the rows no other row beats on both
  score and total seconds.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Generic, TypeVar

import numpy as np

from facefoundry.config import OUTPUT, RUNTIME, dotted_marked
from facefoundry.stats import Summary, TTest, summarise, versus

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
TIE = "≈"  # the row's difference from the top row is not significant at report.alpha
UNTESTED = "n=1: untested"
DAGGER = "†"  # a one-seed row ranked above a repeated one
TOP = "top"
VS_TOP = "vs top"  # the header of the markers' column
# cost, in wall-clock seconds, logged to MLflow only (never to DVC outputs: those stay byte-identical)
GENERATION_SECONDS = "cost/generation_seconds"  # the generate run: writing the dataset
GENERATOR_TRAINING_SECONDS = "cost/generator_training_seconds"  # the generate run: its generator's training (0: none)
TRAIN_SECONDS = "cost/train_seconds"  # the FR training run
DATASET_SECONDS = "cost/dataset_seconds"  # joined: generator training + generation of the run's dataset
TOTAL_SECONDS = "cost/total_seconds"  # joined: dataset + FR training
COST_KEYS = (DATASET_SECONDS, TRAIN_SECONDS, TOTAL_SECONDS)
COST_LABELS = {DATASET_SECONDS: "dataset s", TRAIN_SECONDS: "FR train s", TOTAL_SECONDS: "total s"}


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
    alpha: float = 0.05  # report.alpha: rows whose difference from the top row is not significant at it are ties
    level: float = 0.95  # report.level: of the confidence intervals over seeds
    cost_columns: list[str] = field(default_factory=list)  # the COST_KEYS some ranked run has

    def pareto(self) -> Front[Row]:
        """The rows no other row beats on both the ranked score and the total seconds (``cost/total_seconds``)."""
        sign = 1.0 if self.higher_is_better else -1.0
        return pareto_front(self.rows, lambda r: sign * r.mean, lambda r: r.seconds(TOTAL_SECONDS))

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

    @property
    def ci_column(self) -> str:
        return f"{100 * self.level:g}% CI"

    def table(self, top: int | None = None) -> tuple[list[str], list[list[str]]]:
        """Header and cells; the ranked column (mean ± std over seeds) is followed by its confidence
        interval and the ``vs top`` marker."""
        multi = self.multi_experiment
        header = [
            "rank",
            "recipe",
            "n",
            *(["experiment"] if multi else []),
            *[f"{label(b)} %" for b in self.columns],
            *(["average %"] if self.average_over else []),
            *[data_label(k) for k in self.data_columns],
            *[COST_LABELS[k] for k in self.cost_columns],
            *[short(p) for p in self.differing],
        ]
        ranked = self.ranked_column
        pos = header.index(ranked) if ranked in header else -1
        at = pos + 1 if pos >= 0 else len(header) - len(self.differing)
        percent = not self.metric.startswith("data/")
        header[at:at] = [self.ci_column, VS_TOP]
        out = []
        for i, r in enumerate(self.rows[:top] if top else self.rows, 1):
            n = str(r.n) if r.n == len(r.runs) else f"{r.n} ({len(r.runs)} runs)"
            cells = [str(i), r.recipe, n, *([", ".join(r.experiments)] if multi else [])]
            cells += [pm(r.per_benchmark[b]) if r.per_benchmark.get(b) else "—" for b in self.columns]
            cells += [pm(r.average)] if self.average_over else []
            cells += [_fmt(r.data.get(k, [])) for k in self.data_columns]
            cells += [_seconds(r.seconds(k)) for k in self.cost_columns]
            cells += [r.params.get(p, "—") for p in self.differing]
            if pos >= 0:  # the ranked cell from the seeds' summary (runs sharing a seed count once)
                cells[pos] = mean_std(r.samples, percent)
            cells[at:at] = [interval(r.summary, percent), r.marker]
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
        if self.cost_columns:
            front = self.pareto()
            notes.append(
                "Cost in wall-clock seconds (mean over the row's runs; — unknown): dataset = its generator's "
                "training + generation, total = dataset + FR training. Pareto front (no row both scores higher "
                f"and costs less): {', '.join(r.recipe for r in front.rows) or '—'}"
                + (f"; left off, without a total cost: {front.without_cost}." if front.without_cost else ".")
            )
        return notes

    @property
    def above_repeated(self) -> list[Row]:
        """One-seed rows ranked above at least one repeated row (marked ``†``)."""
        last = max((i for i, r in enumerate(self.rows) if r.n > 1), default=0)
        return [r for r in self.rows[:last] if r.n == 1]

    def footnotes(self) -> list[str]:
        """What ``n``, the interval and the ``vs top`` markers mean: the lines under the table."""
        lines = [
            f"n: FR seeds (a seed run twice counts once, its newest run); the ranked score is their mean ± sample std, "
            f"{self.ci_column}: its t-based {100 * self.level:g}% confidence interval."
        ]
        lines.append(
            f"vs top: {TIE} marks a row whose difference from the top row is not significant at "
            f"α = {self.alpha:g} (statistically indistinguishable from it; two-sided paired t-test over the "
            "seeds both ran where at least two are shared, else Welch's t-test); p = the test's p-value "
            f"where it is significant; '{UNTESTED}': a row with one seed cannot be tested."
        )
        if self.rows and not any(r.n > 1 for r in self.rows):
            lines.append(
                "No recipe was run with more than one FR seed: the order rests on single runs, which move by "
                "up to 3 points with their seed, and no difference is tested."
            )
        elif self.rows and self.rows[0].n == 1:
            lines.append("The top row is a single run: no row can be tested against it (repeat it over seeds).")
        lifted = self.above_repeated
        if lifted:
            lines.append(
                f"{DAGGER} ranked on one run above a recipe repeated over seeds ({', '.join(r.recipe for r in lifted)}): "
                "rows are ranked by mean, but a single run moves by up to 3 points with its seed; "
                "repeat it before trusting its place."
            )
        return lines

    def markdown(self, top: int | None = None) -> str:
        header, rows = self.table(top)
        ranked = self.ranked_column
        head = [f"**{h}**" if h == ranked else h for h in header]
        md = "\n\n".join(self.notes()) + "\n\n| " + " | ".join(head) + " |\n|" + "---|" * len(header) + "\n"
        md += "".join("| " + " | ".join(r) + " |\n" for r in rows)
        md += "\n" + "\n\n".join(self.footnotes()) + "\n"
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
        foot = "".join(f"<p>{esc(n)}</p>\n" for n in self.footnotes())
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
            f"<table><thead><tr>{th}</tr></thead>\n<tbody>\n{body}</tbody></table>\n{foot}{left}</body></html>\n"
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
            "cost_columns": self.cost_columns,
            **({"pareto": [r.recipe for r in self.pareto().rows]} if self.cost_columns else {}),
            "alpha": self.alpha,
            "level": self.level,
            "tie_test": "two-sided paired t-test over shared seeds (at least two), else Welch's t-test, "
            "against the top row",
            "rows": [
                {
                    "recipe": r.recipe,
                    "runs": r.runs,
                    "experiments": r.experiments,
                    "params": r.params,
                    "score_mean": r.mean,
                    "score_std": r.std,
                    "n": r.n,
                    "seeds": {str(s): v for s, v in r.by_seed.items()},
                    "run_seeds": r.seeds,
                    "score_ci_low": r.summary.ci_low if r.summary is not None and r.n > 1 else None,
                    "score_ci_high": r.summary.ci_high if r.summary is not None and r.n > 1 else None,
                    "tie": r.tie,
                    "vs_top": None if r.vs_top is None else _json_test(r.vs_top),
                    "marker": r.marker,
                    "per_benchmark": r.per_benchmark,
                    "average": r.average,
                    "data": r.data,
                    **({"cost": {k: r.seconds(k) for k in self.cost_columns}} if self.cost_columns else {}),
                }
                for r in self.rows
            ],
        }


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
    front = [
        (r, s, c) for r, s, c in points if not any(s2 >= s and c2 <= c and (s2 > s or c2 < c) for _, s2, c2 in points)
    ]
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


def _json_test(t: TTest) -> dict[str, float | str | int | None]:
    """``TTest.as_dict`` with ``None`` for undefined numbers (JSON has no NaN)."""
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in t.as_dict().items()}


def _num(v: float, percent: bool) -> str:
    if percent:
        return f"{100 * v:.2f}"
    return f"{v:.0f}" if float(v).is_integer() and abs(v) >= 1 else f"{v:.3f}"


def mean_std(values: list[float], percent: bool = True) -> str:
    """``mean ± std`` over seeds (``±`` only for repeats), in percent for accuracies."""
    if not values:
        return "—"
    s = summarise(values)
    return f"{_num(s.mean, percent)} ± {_num(s.std, percent)}" if s.n > 1 else _num(s.mean, percent)


def interval(summary: Summary | None, percent: bool = True) -> str:
    """``low – high``: the t-interval of the mean; ``—`` for one seed (no interval)."""
    if summary is None or summary.n < 2:
        return "—"
    return f"{_num(summary.ci_low, percent)} – {_num(summary.ci_high, percent)}"


def compare(row: Row, top: Row, level: float = 0.95) -> TTest:
    """``row`` against ``top`` (two-sided): paired over the seeds both ran (at least two), else Welch's.

    Runs without a seed cannot be paired: where either row has one, both are passed under disjoint keys
    so :func:`facefoundry.stats.versus` falls back to Welch's test."""
    a, b = row.by_seed, top.by_seed
    if len(a) != row.n or len(b) != top.n:
        a = dict(enumerate(row.samples))
        b = {len(a) + i: v for i, v in enumerate(top.samples)}
    return versus(a, b, "two-sided", level).best


def judge(rows: list[Row], alpha: float, level: float) -> None:
    """Set each row's summary, its test against the top row, ``tie`` and the ``vs top`` marker."""
    last_repeated = max((i for i, r in enumerate(rows) if r.n > 1), default=-1)
    for i, r in enumerate(rows):
        r.summary = summarise(r.samples, level)
        r.vs_top, r.tie = None, None
        if i == 0:
            r.marker = TOP
        elif r.n == 1:
            r.marker = UNTESTED
        elif rows[0].n == 1:
            r.marker = "untested (top n=1)"
        else:
            r.vs_top = compare(r, rows[0], level)
            if not r.vs_top.defined:
                r.marker = "untested (no spread)"
            else:
                r.tie = not r.vs_top.significant(alpha)
                r.marker = f"{TIE} p={r.vs_top.p:.2g}" if r.tie else f"p={r.vs_top.p:.2g}"
        if r.n == 1 and i < last_repeated:
            r.marker += f" {DAGGER}"


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
        params = {k: str(v) for k, v in r["params"].items() if k not in VOLATILE}
        key = json.dumps(params, sort_keys=True)
        recipe = recipe_of(r)
        row = groups.setdefault(
            key, Row(recipe, key, [], params, [], {b: [] for b in columns}, [], {k: [] for k in data_columns}, [])
        )
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
