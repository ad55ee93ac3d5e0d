"""Repeats of the best trials with more FR seeds: which trials, the winner on the repeated means (pure), the
results' columns, and a resumed sweep not running finished repeats again (no Ray)."""

import json
from pathlib import Path

import pytest
import yaml

from facefoundry.sweep import repeats
from facefoundry.sweep.repeats import choose, plan, row_columns, summarise_repeats, top_k
from facefoundry.sweep.spec import load_spec
from tests.conftest import tiny_config


def row(trial: str, number: int, objective: float | None, status: str = "completed") -> dict:
    return {
        "trial": trial,
        "number": number,
        "params": {"train.lr": 0.01 * (number + 1)},
        "status": status,
        "objective": objective,
    }


ROWS = [
    row("000_a", 0, 0.70),
    row("001_b", 1, 0.80),  # the best single run
    row("002_c", 2, 0.90, "stopped"),  # stopped by ASHA: its objective is an early epoch's, never a candidate
    row("003_d", 3, 0.75),
    row("004_e", 4, None, "failed"),
]


def test_top_k_takes_completed_trials_best_first():
    assert [r["trial"] for r in top_k(ROWS, 2, "max")] == ["001_b", "003_d"]
    assert [r["trial"] for r in top_k(ROWS, 2, "min")] == ["000_a", "003_d"]
    assert [r["trial"] for r in top_k(ROWS, 10, "max")] == ["001_b", "003_d", "000_a"]
    assert top_k([row("x", 0, 0.5), row("y", 1, 0.5)], 1, "max")[0]["trial"] == "x"  # a tie: the earlier trial


def test_the_best_single_run_loses_to_a_better_mean():
    cands = choose({"001_b": [0.80, 0.70, 0.71], "003_d": [0.75, 0.76, 0.77]}, "max")
    assert [c.trial for c in cands] == ["003_d", "001_b"] and cands[0].winner and not cands[1].winner
    win = cands[0].summary
    assert win.n == 3 and win.mean == pytest.approx(0.76) and win.std == pytest.approx(0.01)
    assert win.ci_low < 0.76 < win.ci_high and win.ci_high - win.ci_low == pytest.approx(2 * 4.302653 * 0.01 / 3**0.5)
    assert choose({"001_b": [0.80, 0.70, 0.71], "003_d": [0.75, 0.76, 0.77]}, "min")[0].trial == "001_b"
    tie = choose({"b": [0.5, 0.7], "a": [0.6, 0.6]}, "max")  # equal means: the search's order
    assert tie[0].trial == "b"
    one = choose({"a": [0.6]}, "max")[0]  # no finished repeat: n 1, the interval is the value
    assert one.summary.n == 1 and one.summary.ci_low == one.summary.ci_high == 0.6


def sweep_with_repeats(tmp: Path, **rep):
    tiny_config(tmp)
    spec = {
        "params": str(tmp / "params.yaml"),
        "space": {"train.lr": {"type": "loguniform", "low": 0.01, "high": 0.2}},
        "budget": {"trials": 5},
        "repeats": {"top_k": 2, "seeds": [11, 12], **rep},
    }
    (tmp / "sweep.yaml").write_text(yaml.safe_dump(spec))
    return load_spec(tmp / "sweep.yaml", out=str(tmp / "out"))


def write_repeat(out: Path, of: str, seed: int, objective: float | None) -> None:
    folder = out / "repeats" / f"{of}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trial.json").write_text(json.dumps({"repeat_of": of, "seed": seed, "run_id": "r"}))
    if objective is not None:
        (folder / "result.json").write_text(json.dumps({"final": 1, "objective": objective}))


def test_summary_winner_and_columns(tmp_path):
    sweep = sweep_with_repeats(tmp_path)
    assert [(p["of"], p["seed"]) for p in plan(sweep, ROWS)] == [
        ("001_b", 11),
        ("001_b", 12),
        ("003_d", 11),
        ("003_d", 12),
    ]
    out = tmp_path / "out"
    write_repeat(out, "001_b", 11, 0.70)
    write_repeat(out, "001_b", 12, 0.71)
    write_repeat(out, "003_d", 11, 0.76)
    write_repeat(out, "003_d", 12, None)  # unfinished: not in the mean
    write_repeat(out, "003_d", 99, 0.10)  # a seed no longer in the spec: not in the mean
    s = summarise_repeats(sweep, ROWS, repeats.collect_repeats(out))
    assert s is not None and s["winner"] == "003_d" and s["best_single"] == "001_b" and s["completed"] == 3
    by = {c["trial"]: c for c in s["candidates"]}
    assert by["003_d"]["values"] == [0.75, 0.76] and by["001_b"]["values"] == [0.80, 0.70, 0.71]
    cols = row_columns(s, "003_d")
    assert cols["repeat_n"] == 2 and cols["repeat_mean"] == pytest.approx(0.755) and cols["winner"] is True
    assert row_columns(s, "000_a") == {
        "repeat_n": None,
        "repeat_mean": None,
        "repeat_std": None,
        "repeat_ci_low": None,
        "repeat_ci_high": None,
        "winner": False,
    }
    table = repeats.repeats_table(s)
    assert "| 003_d | 2 | 0.7550 |" in table and table.count("**winner**") == 1
    # the runner-up against the winner over the seeds both ran (base 7 and 11): paired, two points
    vs = by["001_b"]["versus_winner"]
    assert by["003_d"]["versus_winner"] is None and vs["test"] == "paired" and vs["seeds"] == 2
    assert vs["difference"] == pytest.approx((0.80 + 0.70 + 0.71) / 3 - 0.755)
    assert "p = " in table and "(paired)" in table
    assert summarise_repeats(sweep, [r for r in ROWS if r["status"] != "completed"], []) is None


def test_a_resumed_sweep_does_not_run_finished_repeats(tmp_path):
    sweep = sweep_with_repeats(tmp_path, top_k=1, seeds=[11])
    out = tmp_path / "out"
    write_repeat(out, "001_b", 11, 0.7)
    assert repeats.is_done(out, {"of": "001_b", "seed": 11})
    assert repeats.run_repeats(sweep, out, ROWS, trainable=None, verbose=0) is False  # nothing left: no Ray


def test_a_failed_repeat_is_not_retried_on_resume(tmp_path, capsys):
    sweep = sweep_with_repeats(tmp_path, top_k=1, seeds=[11, 12])
    out = tmp_path / "out"
    write_repeat(out, "001_b", 11, 0.7)
    repeats.mark_failed(out, {"of": "001_b", "seed": 12}, "RuntimeError: out of memory")
    assert repeats.failed_before(out, {"of": "001_b", "seed": 12})
    assert repeats.run_repeats(sweep, out, ROWS, trainable=None, verbose=0) is False  # nothing to run: no Ray
    err = capsys.readouterr().err
    assert "1 failed before, not retried" in err and "failed.json (delete to retry)" in err
    write_repeat(out, "001_b", 12, 0.72)  # finished since (e.g. rerun by hand): done, not failed
    assert not repeats.failed_before(out, {"of": "001_b", "seed": 12})
