"""The evidence a promotion needs, as pure functions (no store): seeds per recipe, the one-sided test against
the champion, the refusal line with its compare command, and the card's evidence section."""

from __future__ import annotations

import pytest

from facefoundry.leaderboard import build
from facefoundry.promote.card import CardFacts, dataset_card
from facefoundry.promote.evidence import (
    Side,
    by_seed,
    card_section,
    compare_command,
    recipe_key,
    refusal,
    score_of,
    weigh,
)

SEEDS = [1234, 2, 3]


def side(recipe: str, values: list[float], seeds: list[int] = SEEDS, version: str = "") -> Side:
    return Side(recipe, dict(zip(seeds, values)), [f"{recipe}-{s}" for s in seeds], f"data/{recipe}", version)


CHAMPION = side("renders", [0.700, 0.705, 0.695], version="4")


def test_a_challenger_five_points_better_passes_one_within_noise_does_not():
    better = weigh("twins", side("codebank", [0.752, 0.757, 0.744]), CHAMPION, 0.05, 3)
    assert better.passed and better.shortfall() == "" and not better.lacking
    t = better.test
    assert t is not None and t.kind == "paired" and t.alternative == "greater" and t.p < 0.01
    assert better.difference == pytest.approx(0.051)

    noise = weigh("twins", side("codebank", [0.723, 0.683, 0.703]), CHAMPION, 0.05, 3)  # +0.3, spread 2
    assert not noise.passed and noise.test is not None and noise.test.p > 0.3
    assert noise.shortfall() == f"evidence: p={noise.test.p:.3g} >= promote.alpha=0.05"
    line = refusal(noise, SEEDS, "abcdef123456")
    assert line.startswith(
        "promotion refused: codebank (run abcdef12) does not beat the champion v4 (renders) on twins"
    )
    assert "70.30 ± 2.00 % over seeds 2, 3, 1234 against 70.00 ± 0.50 %" in line and "(+0.30 points)" in line
    assert "paired t-test t=" in line and "the champion stays" in line and "--force" in line and "\n" not in line

    worse = weigh("twins", side("codebank", [0.60, 0.61, 0.62]), CHAMPION, 0.05, 3)
    assert not worse.passed and worse.test is not None and worse.test.p > 0.99  # one-sided: worse is no evidence


def test_welch_when_the_seeds_differ_and_alpha_decides():
    other = side("codebank", [0.752, 0.757, 0.744], seeds=[10, 11, 12])
    ev = weigh("average", other, CHAMPION, 0.05, 3)
    assert ev.test is not None and ev.test.kind == "welch" and ev.passed
    assert not weigh("average", other, CHAMPION, ev.test.p / 2, 3).passed  # a stricter α refuses the same data


def test_too_few_seeds_on_either_side_is_refused_with_the_compare_command():
    one = side("codebank", [0.9], seeds=[1234])
    first = weigh("twins", one, None, 0.05, 3)
    assert not first.passed and first.lacking == [one]
    assert first.shortfall() == "evidence: challenger n=1 < promote.min_seeds=3"
    line = refusal(first, SEEDS)
    assert "it has 1 FR seed (1234) on twins accuracy; a first champion needs promote.min_seeds=3" in line
    assert """`facefoundry --set 'compare.recipes={"codebank": "data/codebank"}' compare`""" in line

    assert weigh("twins", side("codebank", [0.70, 0.71, 0.72]), None, 0.05, 3).passed  # a first champion: 3 seeds

    thin = side("renders", [0.70], seeds=[1234], version="4")
    ev = weigh("twins", side("codebank", [0.80, 0.81, 0.82]), thin, 0.05, 3)
    assert not ev.passed and ev.lacking == [thin] and ev.shortfall() == "evidence: champion n=1 < promote.min_seeds=3"
    line = refusal(ev, SEEDS)
    assert "the champion v4 (renders) has 1 FR seed (1234)" in line and "seeds of each" in line
    assert """compare.recipes={"renders": "data/renders"}""" in line

    both = weigh("twins", side("renders", [0.9], seeds=[1]), thin, 0.05, 3)  # one name, two recipes
    assert compare_command(both, SEEDS) == (
        """facefoundry --set 'compare.recipes={"renders": "data/renders", "renders_champion": "data/renders"}' """
        "compare"
    )
    five = weigh("twins", one, None, 0.05, 5)  # more seeds than compare.seeds has
    assert "--set 'compare.seeds=[1234, 2, 3, 1, 4]' compare" in compare_command(five, SEEDS)


def test_the_champions_own_recipe_and_lower_is_better_metrics():
    assert weigh("twins", side("renders", [0.71]), CHAMPION, 0.05, 3, same_recipe=True).passed
    # data/duplicate_images: lower is better, so "greater" is tested on the negated values
    fewer = weigh("data/duplicate_images", side("a", [1, 2, 1]), side("b", [9, 8, 10]), 0.05, 3, higher_is_better=False)
    assert fewer.passed and fewer.difference == pytest.approx(-23 / 3)
    # a data metric the FR seed does not move: no spread, no test
    flat = weigh("data/identities", side("a", [600] * 3), side("b", [500] * 3), 0.05, 3)
    assert not flat.passed and "undefined" in flat.shortfall()
    assert "a data metric does not vary with the FR seed" in refusal(flat, SEEDS)


def run(run_id: str, seed: object, acc: float | None, lr: str = "0.1", **params: str) -> dict:
    p = {"base.seed": str(seed), "train.lr": lr, "train.out": f"out/{run_id}", "base.experiment": "x", **params}
    m = {} if acc is None else {"twins/accuracy": acc, "real/accuracy": acc - 0.1}
    return {"run_id": run_id, "params": p, "metrics": m, "tags": {}}


def test_seeds_are_the_leaderboards_grouping_and_score():
    runs = [
        run("r1", 1, 0.70),
        run("r1b", 1, 0.72),  # the same seed again, an older run: the newest counts
        run("r2", 2, 0.69),
        run("r3", "None", 0.71),  # no seed: not evidence
        run("r4", 4, None),  # no value: not evidence
        run("o1", 1, 0.80, lr="0.05"),
    ]
    board = build(runs[:3] + runs[5:], metric="twins")
    rows = {r.recipe: r for r in board.rows}
    [row] = [r for r in board.rows if "r1" in r.runs]
    assert rows and {recipe_key(runs[i]) for i in range(5)} == {row.key}  # train.out, base.experiment: volatile
    assert recipe_key(runs[5]) != row.key

    def twins(r: dict) -> float | None:
        return score_of(r["metrics"], "twins", ["twins"])

    values, used = by_seed(runs[:5], twins)
    assert values == pytest.approx({1: 0.70, 2: 0.69}) and used == ["r1", "r2"]
    assert score_of(runs[0]["metrics"], "average", ["twins", "real"]) == pytest.approx(0.65)
    assert score_of(runs[0]["metrics"], "average", ["twins", "lfw"]) is None


def test_the_card_states_the_test_or_that_it_was_forced():
    ev = weigh("twins", side("codebank", [0.752, 0.757, 0.744]), CHAMPION, 0.05, 3)
    text = "\n".join(card_section(ev, forced=False))
    t = ev.test
    assert t is not None
    assert "| challenger (this recipe) | codebank | 3 | 2, 3, 1234 | 75.10 ± 0.66 % |" in text
    assert "| champion before (v4) | renders | 3 | 2, 3, 1234 | 70.00 ± 0.50 % |" in text
    assert "Difference +5.10 points. Paired t-test over the seeds both ran (2, 3, 1234), one-sided" in text
    assert f"t = {t.t:.3f}, df = 2, p = {t.p:.4g} < α = 0.05: significant." in text
    assert "Forced" not in text

    one = weigh("twins", side("codebank", [0.9], seeds=[1234]), CHAMPION, 0.05, 3)
    forced = "\n".join(card_section(one, forced=True))
    assert "**Forced** (`facefoundry promote --force`)" in forced
    assert "evidence: challenger n=1 < promote.min_seeds=3" in forced
    assert "| challenger (this recipe) | codebank | 1 | 1234 | 90.00 % |" in forced
    assert "No t-test: a side has fewer than two seeds." in forced

    facts = CardFacts("codebank", "r", "e", "data/codebank", "d", {}, {}, "", "twins", 0.757, evidence=ev)
    card = dataset_card(facts)
    assert "## Evidence" in card and card.index("## Evidence") < card.index("## Generator and parameters")


def test_a_distilled_challenger_says_so_against_a_label_trained_champion():
    from dataclasses import replace

    challenger = replace(side("codebank", [0.752, 0.757, 0.744]), regime="distill:sface")
    ev = weigh("twins", challenger, CHAMPION, 0.05, 3)
    assert ev.line().endswith("regimes: challenger distill:sface, champion labels")
    assert ev.as_dict()["challenger"]["regime"] == "distill:sface" and ev.as_dict()["champion"]["regime"] == "labels"
    assert "regimes" not in weigh("twins", side("codebank", [0.752, 0.757, 0.744]), CHAMPION, 0.05, 3).line()
    # the recipe key tells the regimes apart, and an old label run from a new one not
    old = {"params": {"base.seed": "1", "train.lr": "0.1"}, "tags": {}}
    new = {"params": {"base.seed": "2", "train.lr": "0.1", "train.objective": "labels", "train.teacher": "dlib"}}
    distilled = {"params": {"base.seed": "1", "train.lr": "0.1", "train.objective": "distill", "train.teacher": "dlib"}}
    assert recipe_key(old) == recipe_key(new) != recipe_key(distilled)
