"""The ranked table: :class:`Leaderboard` holds the judged rows and what they were ranked on, and renders them as
cells, markdown, a standalone HTML page and JSON, with the notes and footnotes that explain the score, the cost
columns and the ``vs top`` markers."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facefoundry.leaderboard.cost import COST_LABELS, TOTAL_SECONDS, Front, _seconds, pareto_front
from facefoundry.leaderboard.rows import _JUDGE, AVERAGE, LABELS_REGIME, Row, _fmt, data_label, label, short
from facefoundry.leaderboard.significance import DAGGER, TIE, UNTESTED, VS_TOP, _json_test, interval, mean_std, pm


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
    def regimes(self) -> list[str]:
        """The training regimes among the rows, in rank order (one entry, ``labels``, for most boards)."""
        return list(dict.fromkeys(r.regime for r in self.rows))

    @property
    def regime_column(self) -> bool:
        """Shown whenever any row was not trained on labels alone: a distilled model is never ranked beside a
        label-trained one without a column that says which is which."""
        return self.regimes not in ([], [LABELS_REGIME])

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
            *(["regime"] if self.regime_column else []),
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
            cells = [str(i), r.recipe, *([r.regime] if self.regime_column else []), n]
            cells += [", ".join(r.experiments)] if multi else []
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
        if self.regime_column:
            notes.append(
                "regime: what the FR model learned from: labels (a margin head on the generated identities) or "
                "distill:<teacher> / both:<teacher> (a pretrained encoder's embeddings of the same generated images, "
                "alone or beside the labels). A distilled model inherits what its teacher learned from real faces: "
                "compare regimes knowingly."
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
                    "regime": r.regime,
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
