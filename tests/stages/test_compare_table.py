"""compare's claims: a published direction judged over seeds (holds, reversed, not shown, untested). Pure."""

from __future__ import annotations

import pytest

from facefoundry.stages.compare_table import claims, claims_markdown
from facefoundry.stats import paired


def _runs(values: list[float], bench: str = "real") -> dict[int, dict[str, float]]:
    return {seed: {f"{bench}_accuracy": v, "mean_accuracy": v} for seed, v in zip((1234, 2, 3), values)}


BASE = [0.620, 0.600, 0.610]
PER_SEED = {
    "base": _runs(BASE),
    "better": _runs([v + d for v, d in zip(BASE, (0.050, 0.055, 0.045))]),  # +5 points on every seed
    "worse": _runs([v - d for v, d in zip(BASE, (0.050, 0.055, 0.045))]),
    "noise": _runs([v + d for v, d in zip(BASE, (0.020, -0.015, 0.001))]),
    "single": {1234: {"real_accuracy": 0.7}},
}


def _verdict(recipe: str, expect: str = "higher", against: str = "base") -> dict:
    [row] = claims(PER_SEED, [{"recipe": recipe, "against": against, "expect": expect}], 0.05, 0.95)
    return row


def test_a_real_difference_holds_and_its_p_is_the_paired_tests():
    row = _verdict("better")
    assert row["verdict"] == "holds" and row["test"] == "paired" and row["benchmark"] == "real"
    better = {s: m["real_accuracy"] for s, m in PER_SEED["better"].items()}
    base = {s: m["real_accuracy"] for s, m in PER_SEED["base"].items()}
    assert row["p"] == pytest.approx(paired(better, base).p) and row["difference"] == pytest.approx(0.05)


def test_the_wrong_direction_is_reversed_and_noise_is_not_shown():
    assert _verdict("worse")["verdict"] == "reversed"
    assert _verdict("worse", expect="lower")["verdict"] == "holds"
    assert _verdict("noise")["verdict"] == "not shown"
    assert _verdict("single")["verdict"].startswith("untested")


def test_mean_accuracy_is_not_a_benchmark_and_the_table_names_the_source():
    rows = claims(
        PER_SEED, [{"recipe": "better", "against": "base", "expect": "higher", "source": "paper X"}], 0.05, 0.95
    )
    assert [r["benchmark"] for r in rows] == ["real"]
    table = claims_markdown(rows, 0.05)
    assert "| better vs base (paper X) | higher | real | 66.00 vs 61.00 | +5.00 |" in table and "| holds |" in table
    assert claims_markdown([], 0.05) == ""


def test_a_distilled_recipe_is_labelled_in_every_table():
    from facefoundry.stages.compare_table import markdown, summary

    result = summary({"base": PER_SEED["base"], "better": PER_SEED["better"]}, "base", 0.95)
    plain = markdown(result, 0.05)
    assert "regime" not in plain  # label-trained recipes alone: no column
    result["regimes"] = {"base": "labels", "better": "distill:sface"}
    table = markdown(result, 0.05)
    header = next(line for line in table.splitlines() if line.startswith("| recipe"))
    assert header.split("|")[2].strip() == "regime"
    assert "| base | labels | 3 |" in table and "| better | distill:sface | 3 |" in table
    assert "what that teacher learned from real faces" in table
