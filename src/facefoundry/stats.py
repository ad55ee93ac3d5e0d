"""Statistics over FR seeds: what a recipe scores when the seed is noise, and whether two recipes differ.

One FR run moves by up to 3 points on a 1,290-pair benchmark with its seed, as much as most differences
between dataset recipes, so every decision the platform makes (the leaderboard's order, ``compare``'s
table, promotion) reads repeated runs through these pure functions:

- :func:`summarise`: mean, sample standard deviation and a t-based confidence interval over seeds;
- :func:`welch`: Welch's unequal-variance t-test between two recipes (independent seeds);
- :func:`paired`: the paired t-test over the seeds both recipes ran (the same seed gives the same FR
  initialisation and batch order, so the pairing removes that part of the noise);
- :func:`versus`: both, as a baseline comparison reports them.

p-values are two-sided unless ``alternative="greater"`` (the challenger's mean is higher). No I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from scipy import stats as _st

Alternative = Literal["two-sided", "greater"]


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); 0 for one value
    ci_low: float  # t-based confidence interval of the mean; equal to the mean for one value
    ci_high: float
    level: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2

    def as_dict(self) -> dict[str, float]:
        return {"n": self.n, "mean": self.mean, "std": self.std, "ci_low": self.ci_low, "ci_high": self.ci_high}


@dataclass(frozen=True)
class TTest:
    kind: Literal["welch", "paired"]
    t: float  # nan when undefined (fewer than 2 values a side, or no spread at all)
    df: float
    p: float  # nan when undefined
    n_a: int
    n_b: int
    alternative: Alternative = "two-sided"

    @property
    def defined(self) -> bool:
        return not math.isnan(self.p)

    def significant(self, alpha: float) -> bool:
        return self.defined and self.p < alpha

    def as_dict(self) -> dict[str, float | str | int]:
        return {"test": self.kind, "t": self.t, "df": self.df, "p": self.p, "n_a": self.n_a, "n_b": self.n_b}


def summarise(values: Sequence[float], level: float = 0.95) -> Summary:
    """Mean ± sample std and the ``level`` t-interval of the mean of ``values`` (one per seed)."""
    x = [float(v) for v in values]
    n = len(x)
    if n == 0:
        raise ValueError("no values to summarise")
    mean = math.fsum(x) / n
    if n == 1:
        return Summary(1, mean, 0.0, mean, mean, level)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in x) / (n - 1))
    half = float(_st.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half, level)


def _p_value(t: float, df: float, alternative: Alternative) -> float:
    if alternative == "greater":
        return float(_st.t.sf(t, df))
    return float(2 * _st.t.sf(abs(t), df))


def welch(a: Sequence[float], b: Sequence[float], alternative: Alternative = "two-sided") -> TTest:
    """Welch's t-test of mean(a) against mean(b); ``greater``: the alternative that a's mean is higher."""
    sa, sb = summarise(a), summarise(b)
    nan = float("nan")
    if sa.n < 2 or sb.n < 2:
        return TTest("welch", nan, nan, nan, sa.n, sb.n, alternative)
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    if va + vb == 0:
        return TTest("welch", nan, nan, nan, sa.n, sb.n, alternative)
    t = (sa.mean - sb.mean) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    return TTest("welch", t, df, _p_value(t, df, alternative), sa.n, sb.n, alternative)


def paired(a: Mapping[int, float], b: Mapping[int, float], alternative: Alternative = "two-sided") -> TTest:
    """Paired t-test over the seeds present in both ``a`` and ``b`` (seed → value)."""
    seeds = sorted(set(a) & set(b))
    nan = float("nan")
    if len(seeds) < 2:
        return TTest("paired", nan, nan, nan, len(seeds), len(seeds), alternative)
    d = summarise([a[s] - b[s] for s in seeds])
    if d.std == 0:
        return TTest("paired", nan, nan, nan, d.n, d.n, alternative)
    t = d.mean / (d.std / math.sqrt(d.n))
    df = float(d.n - 1)
    return TTest("paired", t, df, _p_value(t, df, alternative), d.n, d.n, alternative)


@dataclass(frozen=True)
class Versus:
    """A challenger against a baseline: both summaries, Welch's test, and the paired one where seeds match."""

    challenger: Summary
    baseline: Summary
    welch: TTest
    paired: TTest | None  # None when fewer than two seeds are shared

    @property
    def difference(self) -> float:
        return self.challenger.mean - self.baseline.mean

    @property
    def best(self) -> TTest:
        """The paired test where it is defined (it has the power), else Welch's."""
        return self.paired if self.paired is not None and self.paired.defined else self.welch

    def as_dict(self) -> dict[str, object]:
        return {
            "difference": self.difference,
            "challenger": self.challenger.as_dict(),
            "baseline": self.baseline.as_dict(),
            "welch": self.welch.as_dict(),
            "paired": None if self.paired is None else self.paired.as_dict(),
        }


def versus(
    challenger: Mapping[int, float],
    baseline: Mapping[int, float],
    alternative: Alternative = "two-sided",
    level: float = 0.95,
) -> Versus:
    """``challenger`` and ``baseline`` as seed → value (e.g. accuracy on one benchmark)."""
    shared = set(challenger) & set(baseline)
    return Versus(
        summarise(list(challenger.values()), level),
        summarise(list(baseline.values()), level),
        welch(list(challenger.values()), list(baseline.values()), alternative),
        paired(challenger, baseline, alternative) if len(shared) >= 2 else None,
    )
