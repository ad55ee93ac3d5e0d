"""The evidence a new champion needs: repeated FR seeds and a one-sided test against the champion's.

One FR run moves by up to 3 points with its seed, as much as most differences between dataset recipes, so a
single run proves nothing. A challenger (the leaderboard's top recipe) replaces the champion only when

- it has at least ``promote.min_seeds`` FR seeds (distinct ``base.seed`` values among the finished training
  runs of its recipe, the leaderboard's row; a seed run twice counts once, its newest run), and so has the
  champion's recipe (its training runs with the same parameters but the seed and the runtime ones, as the
  leaderboard groups them);
- its mean on the promotion metric beats the champion's with ``p < promote.alpha``, one-sided
  (:func:`facefoundry.stats.versus` with ``"greater"``: the paired t-test over the seeds both ran, else
  Welch's).

The first champion needs ``min_seeds`` seeds and no test; the champion's own recipe (another of its seeds)
needs nothing, since the recipe does not change. ``--force`` overrides the requirement and is recorded.
Pure functions of plain run records (``{"run_id", "params", "metrics", "tags"}``), tested without a store.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from facefoundry.leaderboard import ACC, VOLATILE, label, recipe_identity
from facefoundry.stats import Summary, TTest, Versus, summarise, versus

SEED = "base.seed"
Record = Mapping[str, Any]


def recipe_key(record: Record) -> str:
    """The key the leaderboard groups runs by: every parameter but the seed and the runtime/output ones, and the
    training regime (labels, or distillation from which teacher)."""
    return recipe_identity({"params": record["params"], "tags": record.get("tags") or {}}, VOLATILE)[1]


def score_of(metrics: Mapping[str, float], metric: str, benchmarks: list[str]) -> float | None:
    """A run's value on the promotion metric as the leaderboard scores it: ``data/<name>`` itself, else the
    mean accuracy over ``benchmarks`` (one benchmark, or the average's set); None when it lacks one."""
    if metric.startswith("data/"):
        v = metrics.get(metric)
        return float(v) if v is not None and math.isfinite(v) else None
    if not benchmarks or any(b + ACC not in metrics for b in benchmarks):
        return None
    return math.fsum(float(metrics[b + ACC]) for b in benchmarks) / len(benchmarks)


def seed_of(record: Record) -> int | None:
    try:
        return int(str(record["params"].get(SEED)))
    except ValueError:
        return None


def by_seed(records: Iterable[Record], value: Callable[[Record], float | None]) -> tuple[dict[int, float], list[str]]:
    """Seed → value over ``records`` (newest first), and the run ids counted. A seed run twice counts once, its
    newest run (a rerun is no new draw of the seed's noise; the leaderboard counts it so too); runs without a
    recorded seed or without a value are not evidence."""
    values: dict[int, float] = {}
    used: list[str] = []
    for r in records:
        seed, v = seed_of(r), value(r)
        if seed is None or v is None or seed in values:
            continue
        values[seed] = v
        used.append(str(r["run_id"]))
    return dict(sorted(values.items())), used


@dataclass(frozen=True)
class Side:
    """One recipe's seeds on the promotion metric."""

    recipe: str
    values: dict[int, float]  # seed → value
    runs: list[str]
    dataset: str = ""  # its dataset folder (for the compare command)
    version: str = ""  # the registry version (the champion's)
    regime: str = "labels"  # what its FR models learned from: labels | distill:<teacher> | both:<teacher>

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.values)

    def summary(self) -> Summary | None:
        return summarise(list(self.values.values())) if self.values else None


@dataclass(frozen=True)
class Evidence:
    """What a promotion rests on: both sides' seeds, the test, and whether it passes."""

    metric: str
    alpha: float
    min_seeds: int
    challenger: Side
    champion: Side | None  # None: there is no champion yet
    same_recipe: bool = False  # the challenger is the champion's own recipe
    higher_is_better: bool = True
    result: Versus | None = None  # on oriented values (negated when lower is better); None without a test
    benchmarks: tuple[str, ...] = ()  # what an accuracy metric averages (the leaderboard's)

    @property
    def what(self) -> str:
        """The metric in words: ``twins accuracy``, ``average accuracy (twins, real)``, ``data/identities``."""
        if not self.percent:
            return self.metric
        if self.metric == "average":
            over = f" ({', '.join(label(b) for b in self.benchmarks)})" if self.benchmarks else ""
            return f"average accuracy{over}"
        return f"{label(self.metric)} accuracy"

    @property
    def test(self) -> TTest | None:
        return self.result.best if self.result is not None else None

    @property
    def difference(self) -> float | None:
        """Challenger mean − champion mean, in the metric's own direction."""
        a, b = self.challenger.summary(), self.champion.summary() if self.champion else None
        return a.mean - b.mean if a is not None and b is not None else None

    @property
    def lacking(self) -> list[Side]:
        """The sides that have fewer than ``min_seeds`` seeds (the challenger first)."""
        if self.same_recipe:
            return []
        sides = [self.challenger, *([self.champion] if self.champion is not None else [])]
        return [s for s in sides if s.n < self.min_seeds]

    @property
    def passed(self) -> bool:
        if self.same_recipe:
            return True
        if self.lacking:
            return False
        if self.champion is None:
            return True
        return self.test is not None and self.test.significant(self.alpha)

    def shortfall(self) -> str:
        """Why the evidence does not suffice (``""`` when it does): what ``--force`` records."""
        if self.passed:
            return ""
        if self.lacking:
            who = [
                f"{'challenger' if s is self.challenger else 'champion'} n={s.n}" for s in self.lacking
            ]  # one or both sides
            return f"evidence: {', '.join(who)} < promote.min_seeds={self.min_seeds}"
        t = self.test
        if t is None or not t.defined:
            return "evidence: the test is undefined (no spread over the seeds)"
        return f"evidence: p={t.p:.3g} >= promote.alpha={self.alpha:g}"

    def line(self) -> str:
        """One line: the test and its outcome, or why there is none (tags, the log, the recipe file)."""
        a, b, t = self.challenger, self.champion, self.test
        if self.same_recipe:
            return f"the champion's own recipe ({a.n} seeds): no test needed"
        if b is None:
            return f"first champion: {a.n} seeds ({_seeds(a.seeds)}), promote.min_seeds={self.min_seeds}"
        regimes = f"; regimes: challenger {a.regime}, champion {b.regime}" if a.regime != b.regime else ""
        if t is None or not t.defined:
            return f"no test: challenger n={a.n}, champion n={b.n}{regimes}"
        unit = " points" if self.percent else ""
        return (
            f"{_test_name(t)}, n={t.n_a} vs {t.n_b}: {self.pm(a)} vs {self.pm(b)}, difference "
            f"{self.fmt(self.difference)}{unit}, t={t.t:.3g}, df={t.df:.3g}, p={t.p:.3g} "
            f"{'<' if t.significant(self.alpha) else '>='} alpha={self.alpha:g} (one-sided){regimes}"
        )

    @property
    def percent(self) -> bool:
        return not self.metric.startswith("data/")

    def fmt(self, v: float | None, signed: bool = True) -> str:
        if v is None:
            return "—"
        x = 100 * v if self.percent else v
        return f"{x:+.2f}" if signed else f"{x:.2f}"

    def pm(self, side: Side) -> str:
        s = side.summary()
        if s is None:
            return "—"
        unit = " %" if self.percent else ""
        if s.n == 1:  # no spread to show
            return f"{self.fmt(s.mean, False)}{unit}"
        return f"{self.fmt(s.mean, False)} ± {self.fmt(s.std, False)}{unit}"

    def as_dict(self) -> dict[str, Any]:
        t = self.test
        return {
            "passed": self.passed,
            "metric": self.metric,
            "alpha": self.alpha,
            "min_seeds": self.min_seeds,
            "challenger": {
                "recipe": self.challenger.recipe,
                "regime": self.challenger.regime,
                "seeds": self.challenger.seeds,
                "runs": self.challenger.runs,
            },
            "champion": None
            if self.champion is None
            else {
                "recipe": self.champion.recipe,
                "regime": self.champion.regime,
                "version": self.champion.version,
                "seeds": self.champion.seeds,
                "runs": self.champion.runs,
            },
            "same_recipe": self.same_recipe,
            "difference": self.difference,
            "test": None if t is None else t.as_dict(),
        }


def _seeds(seeds: list[int]) -> str:
    return ", ".join(map(str, seeds)) or "none"


def _test_name(t: TTest) -> str:
    return "paired t-test" if t.kind == "paired" else "Welch's t-test"


def weigh(
    metric: str,
    challenger: Side,
    champion: Side | None,
    alpha: float,
    min_seeds: int,
    higher_is_better: bool = True,
    same_recipe: bool = False,
    benchmarks: tuple[str, ...] = (),
) -> Evidence:
    """The evidence of ``challenger`` against ``champion`` (None: no champion yet) on ``metric``."""
    result = None
    if champion is not None and not same_recipe and challenger.n and champion.n:
        sign = 1.0 if higher_is_better else -1.0  # "greater" then means better
        result = versus(
            {s: sign * v for s, v in challenger.values.items()},
            {s: sign * v for s, v in champion.values.items()},
            "greater",
        )
    return Evidence(metric, alpha, min_seeds, challenger, champion, same_recipe, higher_is_better, result, benchmarks)


def compare_command(ev: Evidence, seeds: list[int]) -> str:
    """The ``facefoundry compare`` line that runs the repeats the lacking sides need (``seeds``: compare.seeds,
    extended when promote.min_seeds asks for more)."""
    recipes: dict[str, str] = {}
    for side in ev.lacking:
        name = side.recipe if side.recipe not in recipes else f"{side.recipe}_champion"
        recipes[name] = side.dataset or "<dataset folder>"
    args = ["facefoundry", "--set", shlex.quote(f"compare.recipes={json.dumps(recipes)}")]
    if len(seeds) < ev.min_seeds:
        more = [*seeds, *(s for s in range(1, 10 * ev.min_seeds) if s not in seeds)][: ev.min_seeds]
        args += ["--set", shlex.quote(f"compare.seeds={json.dumps(more)}")]
    return " ".join([*args, "compare"])


def refusal(ev: Evidence, seeds: list[int], run_id: str = "") -> str:
    """The one line ``promote`` refuses with (the evidence must not have passed)."""
    a, b = ev.challenger, ev.champion
    what = ev.what
    head = f"promotion refused: {a.recipe}" + (f" (run {run_id[:8]})" if run_id else "")
    champ = f"the champion v{b.version} ({b.recipe})" if b is not None else ""
    force = "--force promotes without the evidence, recorded"
    if ev.lacking:
        parts = [
            f"{'it' if s is a else champ} has {s.n} FR seed{'s' if s.n != 1 else ''}"
            + (f" ({_seeds(s.seeds)})" if s.n else "")
            for s in ev.lacking
        ]
        need = (
            f"a first champion needs promote.min_seeds={ev.min_seeds}"
            if b is None
            else f"replacing the champion needs promote.min_seeds={ev.min_seeds} seeds of each"
        )
        return (
            f"{head}: {' and '.join(parts)} on {what}; {need}: run them with "
            f"`{compare_command(ev, seeds)}`, then promote again ({force})"
        )
    assert b is not None  # no lacking side and no champion: passed
    t = ev.test
    stats = (
        f"{_test_name(t)} t={t.t:.3g}, df={t.df:.3g}, p={t.p:.3g} >= promote.alpha={ev.alpha:g} (one-sided)"
        if t is not None and t.defined
        else "the test is undefined (no spread over the seeds"
        + (": a data metric does not vary with the FR seed" if not ev.percent else "")
        + ")"
    )
    return (
        f"{head} does not beat {champ} on {what}: {ev.pm(a)} over seeds {_seeds(a.seeds)} against "
        f"{ev.pm(b)} over {_seeds(b.seeds)} ({ev.fmt(ev.difference)}{' points' if ev.percent else ''}), "
        f"{stats}; the champion stays (more seeds, compare.seeds, can show a smaller difference; {force})"
    )


def card_section(ev: Evidence | None, forced: bool) -> list[str]:
    """The dataset card's ``## Evidence`` section: the test, the seeds, both means ± std, the difference,
    t, df, p and α — or that the promotion was forced, and why."""
    lines = ["## Evidence", ""]
    if ev is None:
        return [*lines, "Not recorded.", ""]
    a, b = ev.challenger, ev.champion
    what = ev.what
    if forced:
        lines += [
            f"**Forced** (`facefoundry promote --force`): promoted without the evidence "
            f"`promote` requires ({ev.shortfall()}). The figures below do not show that this recipe is better "
            "than the champion it replaced; repeat it over seeds (`facefoundry compare`) before relying on it.",
            "",
        ]
    rows = [("challenger (this recipe)", a)] + (
        [(f"champion before (v{b.version})" if b.version else "champion before", b)] if b is not None else []
    )
    lines += [
        f"{what[:1].upper() + what[1:]} over FR seeds (`base.seed`; a seed run twice counts once, its newest run):",
        "",
        "| | recipe | n | seeds | mean ± std |",
        "|---|---|---|---|---|",
        *[f"| {who} | {s.recipe} | {s.n} | {_seeds(s.seeds)} | {ev.pm(s)} |" for who, s in rows],
        "",
    ]
    t = ev.test
    if ev.same_recipe:
        lines.append("The champion's own recipe (another of its seeds): no test, the recipe does not change.")
    elif b is None:
        lines.append(
            f"The first champion: no champion to test against; promote.min_seeds = {ev.min_seeds} seeds required."
        )
    elif t is None:
        lines.append("No test: a side has no seed on this metric.")
    elif not t.defined:
        why = "a side has fewer than two seeds" if min(a.n, b.n) < 2 else "no spread over the seeds"
        lines.append(f"Difference {ev.fmt(ev.difference)}{' points' if ev.percent else ''}. No t-test: {why}.")
    else:
        better = "higher" if ev.higher_is_better else "lower"
        diff = f"{ev.fmt(ev.difference)}{' points' if ev.percent else ''}"
        verdict = "significant" if t.significant(ev.alpha) else "not significant"
        over = (
            f" over the seeds both ran ({_seeds(sorted(set(a.values) & set(b.values)))})" if t.kind == "paired" else ""
        )
        lines.append(
            f"Difference {diff}. {_test_name(t).capitalize()}{over}, one-sided (the challenger's mean is {better}): "
            f"t = {t.t:.3f}, df = {t.df:.3g}, p = {t.p:.4g} {'<' if t.significant(ev.alpha) else '≥'} "
            f"α = {ev.alpha:g}: {verdict}."
        )
    lines.append("")
    return lines
