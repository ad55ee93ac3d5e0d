"""Leaderboard rules on plain run records (no MLflow needed)."""

from __future__ import annotations

import pytest

from facefoundry.leaderboard import build


def rec(run_id: str, recipe: str, metrics: dict, seed: int = 1, lr: float = 0.1, adhoc: bool = False,
        **params: str) -> dict:
    p = {"base.seed": str(seed), "train.lr": str(lr), "data.generator": recipe,
         "train.dataset": f"outputs/datasets/{recipe}", **params}
    tags = {"facefoundry.recipe": recipe, **({"facefoundry.adhoc": "true"} if adhoc else {})}
    return {"run_id": run_id, "params": p, "metrics": {f"{k}/accuracy": v for k, v in metrics.items()},
            "tags": tags}


def test_repeats_group_into_one_row_with_spread():
    board = build([rec("a", "render", {"twins": 0.60}, seed=1), rec("b", "render", {"twins": 0.64}, seed=2),
                   rec("c", "vec2face", {"twins": 0.61}, **{"data.vec2face.tau": "0.4"})])
    assert [r.recipe for r in board.rows] == ["render", "vec2face"]
    top = board.rows[0]
    assert top.runs == ["a", "b"] and top.mean == pytest.approx(0.62) and top.std == pytest.approx(0.028284, 1e-4)
    header, rows = board.table()
    assert rows[0][header.index("score %")] == "62.00 ± 2.83"
    # seeds never make a column; a generator-only parameter is explained by the generator column
    assert "base.seed" not in board.differing and "data.vec2face.tau" not in board.differing
    assert board.differing[0] == "data.generator"


def test_only_differing_parameters_are_columns():
    board = build([rec("a", "render", {"twins": 0.6}, lr=0.1), rec("b", "render", {"twins": 0.7}, lr=0.05)])
    assert board.differing == ["train.lr"]
    assert board.rows[0].params["train.lr"] == "0.05"


def test_never_averages_over_different_benchmark_sets():
    runs = [rec("a", "render", {"twins": 0.9, "real": 0.5}), rec("b", "vec2face", {"twins": 0.6})]
    board = build(runs)
    assert board.benchmarks == ["twins"] and "twins" in board.basis
    assert board.rows[0].recipe == "render" and board.rows[0].mean == pytest.approx(0.9)
    chosen = build(runs, benchmark="real")
    assert [r.recipe for r in chosen.rows] == ["render"] and chosen.excluded == {"runs not evaluated on real": 1}
    both = build([runs[0], rec("c", "vec2face", {"twins": 0.7, "real": 0.6})])
    assert both.benchmarks == ["real", "twins"] and both.rows[0].mean == pytest.approx(0.7)
    assert "mean accuracy over real, twins" in both.basis


def test_adhoc_and_unevaluated_runs_are_left_out_unless_asked():
    runs = [rec("a", "render", {"twins": 0.6}), rec("b", "render", {"twins": 0.9}, lr=0.3, adhoc=True),
            {"run_id": "c", "params": {}, "metrics": {"train/accuracy": 1.0}, "tags": {}}]
    board = build(runs)
    assert [r.runs for r in board.rows] == [["a"]] and sum(board.excluded.values()) == 2
    assert "ad-hoc" in board.markdown()
    assert [r.runs for r in build(runs, include_adhoc=True).rows] == [["b"], ["a"]]
