"""Significance against the top row: each row's summary over seeds, its two-sided test against the top row
(:func:`compare`, :func:`judge`), the ``vs top`` markers (``top``, ``≈``, ``n=1: untested``, ``†``), and the
``mean ± std`` / interval cells those numbers are printed as."""

from __future__ import annotations

import numpy as np

from facefoundry.leaderboard.rows import Row
from facefoundry.stats import Summary, TTest, summarise, versus

TIE = "≈"  # the row's difference from the top row is not significant at report.alpha
UNTESTED = "n=1: untested"
DAGGER = "†"  # a one-seed row ranked above a repeated one
TOP = "top"
VS_TOP = "vs top"  # the header of the markers' column


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
