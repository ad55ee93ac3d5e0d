"""Repeats: the sweep's best trials again with more FR seeds, so the winner is not a coin flip.

One FR run moves by up to 3 points with its seed, as much as most differences between recipes. With
``repeats: {top_k: K, seeds: [...]}`` in the spec, once the search has spent its budget the K best completed
trials (by the objective) run again with each extra FR seed (``base.seed``): the trial's own params and
dataset (the one the original trial trained on), full epochs (no ASHA), each an ordinary trial run under the
sweep's MLflow run, tagged ``facefoundry.repeat_of`` and ``facefoundry.seed``. They are a second, small Ray
Tune run (``<out>/ray/repeats``) of the same trainable over the K×N (params, seed) pairs; their outputs are
``<out>/repeats/<trial>-seed<S>/``. The winner is the best mean over each candidate's original run and its
repeats (:func:`choose`, pure); each other candidate is tested against it over the seeds both ran (the paired
t-test: the same seed, the same initialisation and batch order), so the table says whether the winner is
distinguishable from the runner-up. A resumed sweep skips the repeats that finished (their ``result.json``) and
those that failed before (``failed.json``, written when Ray gave up on them; delete it to try again).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facefoundry.io import atomic_write_json, read_json
from facefoundry.stats import Summary, summarise, versus
from facefoundry.sweep.spec_model import Sweep

REPEAT_KEY = "__repeat"  # the one config key of a repeat's Ray trial: JSON {"of", "params", "seed"}
REPEATS_DIR = "repeats"  # <out>/repeats/<trial>-seed<S>/
FAILED = "failed.json"  # in a repeat's folder: Ray gave up on it (after failure.max_failures retries)
EXPERIMENT = "repeats"  # Ray Tune's experiment folder under <out>/ray


# -- pure: which trials, which winner ---------------------------------------------------------------------
def top_k(rows: Sequence[Mapping[str, Any]], k: int, mode: str) -> list[Mapping[str, Any]]:
    """The ``k`` best completed trials by their objective, best first (ties: the earlier trial)."""
    done = [r for r in rows if r.get("status") == "completed" and isinstance(r.get("objective"), (int, float))]
    sign = -1.0 if mode == "max" else 1.0
    done.sort(key=lambda r: (sign * float(r["objective"]), r.get("number") if r.get("number") is not None else 1 << 30))
    return done[:k]


@dataclass(frozen=True)
class Candidate:
    trial: str
    values: tuple[float, ...]  # the original run's objective first, then its finished repeats'
    summary: Summary
    winner: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"trial": self.trial, "values": list(self.values), **self.summary.as_dict(), "winner": self.winner}


def choose(values: Mapping[str, Sequence[float]], mode: str, level: float = 0.95) -> list[Candidate]:
    """Each candidate's mean ± std and t-interval over its runs, best mean first; the first is the winner.

    ``values``: trial → objectives (original run first), in the order of the search's ranking, which breaks
    ties between equal means.
    """
    cands = [Candidate(t, tuple(float(x) for x in v), summarise(v, level)) for t, v in values.items() if len(v)]
    sign = -1.0 if mode == "max" else 1.0
    cands.sort(key=lambda c: sign * c.summary.mean)  # stable: equal means keep the search's order
    return [Candidate(c.trial, c.values, c.summary, i == 0) for i, c in enumerate(cands)]


def repeat_name(trial: str, seed: int) -> str:
    return f"{trial}-seed{seed}"


def plan(sweep: Sweep, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The (trial, params, seed) pairs to run: the top-k trials × the extra seeds."""
    r = sweep.spec.repeats
    if r is None:
        return []
    best = top_k(rows, r.top_k, sweep.spec.objective.mode)
    return [{"of": row["trial"], "params": row["params"], "seed": s} for row in best for s in sweep.repeat_seeds()]


def _folder(out: Path, pair: Mapping[str, Any]) -> Path:
    return out / REPEATS_DIR / repeat_name(pair["of"], pair["seed"])


def is_done(out: Path, pair: Mapping[str, Any]) -> bool:
    return bool(read_json(_folder(out, pair) / "result.json").get("final"))


def failed_before(out: Path, pair: Mapping[str, Any]) -> bool:
    """Ray gave up on this repeat in an earlier run (and it has not finished since)."""
    return (_folder(out, pair) / FAILED).is_file() and not is_done(out, pair)


def mark_failed(out: Path, pair: Mapping[str, Any], error: str) -> None:
    atomic_write_json(_folder(out, pair) / FAILED, {"of": pair["of"], "seed": pair["seed"], "error": error})


def collect_repeats(out: Path) -> list[dict[str, Any]]:
    """One row per repeat folder: the trial it repeats, its seed, status (completed or not) and objective."""
    rows = []
    for folder in sorted((out / REPEATS_DIR).glob("*")):
        info = read_json(folder / "trial.json")
        if not info or info.get("repeat_of") is None:
            continue
        res = read_json(folder / "result.json")
        rows.append(
            {
                "name": folder.name,
                "repeat_of": info["repeat_of"],
                "seed": info.get("seed"),
                "status": "completed" if res.get("final") else "unfinished",
                "objective": res.get("objective"),
                "run_id": info.get("run_id"),
            }
        )
    return rows


def summarise_repeats(
    sweep: Sweep, rows: Sequence[Mapping[str, Any]], repeats: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """The candidates (the top-k trials) with their runs' summaries and the winner, or None without repeats
    (or without a completed trial)."""
    r = sweep.spec.repeats
    if r is None:
        return None
    mode = sweep.spec.objective.mode
    best = top_k(rows, r.top_k, mode)
    if not best:
        return None
    seeds = sweep.repeat_seeds()
    values: dict[str, list[float]] = {}
    done_seeds: dict[str, list[int]] = {}  # the seeds of each candidate's finished repeats, in order
    for row in best:
        mine = [
            x
            for x in sorted(repeats, key=lambda x: seeds.index(x["seed"]) if x["seed"] in seeds else 1 << 30)
            if x["repeat_of"] == row["trial"]
            and x["seed"] in seeds
            and x["status"] == "completed"
            and isinstance(x["objective"], (int, float))
        ]
        values[row["trial"]] = [float(row["objective"])] + [float(x["objective"]) for x in mine]
        done_seeds[row["trial"]] = [int(x["seed"]) for x in mine]
    cands = choose(values, mode, r.level)
    by_seed = {t: dict(zip([sweep.base_seed, *done_seeds[t]], v)) for t, v in values.items()}
    winner = cands[0].trial
    tests = {
        c.trial: versus(by_seed[c.trial], by_seed[winner], "two-sided", r.level) for c in cands if c.trial != winner
    }
    return {
        "top_k": r.top_k,
        "seeds": seeds,
        "base_seed": sweep.base_seed,
        "level": r.level,
        "candidates": [
            {**c.as_dict(), "versus_winner": _versus(tests[c.trial]) if c.trial in tests else None} for c in cands
        ],
        "winner": cands[0].trial,
        "best_single": best[0]["trial"],
        "planned": len(best) * len(seeds),
        "completed": sum(len(c.values) - 1 for c in cands),
    }


def _versus(v: Any) -> dict[str, Any]:
    """A candidate against the winner: the difference of the means and the test (paired where ≥ 2 seeds match)."""
    return {"difference": v.difference, "p": v.best.p, "test": v.best.kind, "seeds": v.best.n_a}


def repeats_table(summary: Mapping[str, Any]) -> str:
    """Markdown: one row per candidate, best mean first, the winner marked."""
    pct = round(summary["level"] * 100, 1)
    head = ["trial", "n", "mean", "± std", f"{pct:g}% t-interval", "runs", "vs winner: Δ, p (test)", "winner"]
    lines = [
        f"Repeats: the {summary['top_k']} best trial(s) again with FR seeds "
        f"{', '.join(map(str, summary['seeds']))} (the search ran seed {summary['base_seed']}); "
        "the winner has the best mean.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for c in summary["candidates"]:
        cells = [
            c["trial"],
            str(c["n"]),
            f"{c['mean']:.4f}",
            f"{c['std']:.4f}",
            f"[{c['ci_low']:.4f}, {c['ci_high']:.4f}]",
            ", ".join(f"{v:.4f}" for v in c["values"]),
            _versus_cell(c.get("versus_winner")),
            "**winner**" if c["winner"] else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _versus_cell(v: Mapping[str, Any] | None) -> str:
    if v is None:
        return ""
    p = v["p"]
    return f"{v['difference']:+.4f}, " + ("untested (one seed)" if p != p else f"p = {p:.3g} ({v['test']})")


def row_columns(summary: Mapping[str, Any] | None, trial: str) -> dict[str, Any]:
    """The results table's repeat columns of one trial (None for trials that were not candidates)."""
    c = next((c for c in (summary or {}).get("candidates", []) if c["trial"] == trial), None)
    keys = ("n", "mean", "std", "ci_low", "ci_high")
    cols: dict[str, Any] = {f"repeat_{k}": (c[k] if c else None) for k in keys}
    cols["winner"] = bool(c and c["winner"])
    return cols


def parse(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """A repeat's pair from its Ray trial's config, or None for a trial of the search."""
    raw = config.get(REPEAT_KEY)
    return json.loads(raw) if isinstance(raw, str) else None


# -- the driver's second Tune run ------------------------------------------------------------------------
def _dirname(trial) -> str:  # Ray's Trial
    return str(trial.trial_id)


def run_repeats(
    sweep: Sweep, out: Path, rows: Sequence[Mapping[str, Any]], trainable, verbose: int, concurrent: int | None = None
) -> bool:
    """Run the repeats not finished yet as a second Ray Tune run (``concurrent`` at a time; None: the budget's
    ``max_concurrent``); True when it was interrupted."""
    from ray import tune

    from facefoundry.stages.common import log

    pairs = plan(sweep, rows)
    gave_up = [p for p in pairs if failed_before(out, p)]
    todo = [p for p in pairs if not is_done(out, p) and p not in gave_up]
    if not pairs:
        log("repeats: no completed trial to repeat")
        return False
    if gave_up:
        log(
            f"repeats: {len(gave_up)} failed before, not retried: "
            + ", ".join(str(_folder(out, p) / FAILED) for p in gave_up)
            + " (delete to retry)"
        )
    if not todo:
        log(f"repeats: all {len(pairs)} finished{' or failed' if gave_up else ''} before")
        return False
    s = sweep.spec
    log(
        f"repeats: {len(todo)} of {len(pairs)} run(s): trial(s) {', '.join(dict.fromkeys(p['of'] for p in todo))} "
        f"with FR seed(s) {', '.join(map(str, sweep.repeat_seeds()))}, full epochs"
    )
    exp = out / "ray" / EXPERIMENT
    shutil.rmtree(exp, ignore_errors=True)  # a fresh run over what is left (finished ones are skipped above)
    tuner = tune.Tuner(
        trainable,
        param_space={REPEAT_KEY: tune.grid_search([json.dumps(p, sort_keys=True) for p in todo])},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=concurrent or s.budget.max_concurrent,
            reuse_actors=True,
            trial_dirname_creator=_dirname,
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT,
            storage_path=str(out / "ray"),
            verbose=verbose,
            failure_config=tune.FailureConfig(max_failures=s.failure.max_failures),
        ),
    )
    grid = tuner.fit()
    failed = grid.num_errors
    for i in range(len(grid)):
        result = grid[i]
        if result.error is not None and result.config and REPEAT_KEY in result.config:
            pair = json.loads(result.config[REPEAT_KEY])
            if not is_done(out, pair):
                mark_failed(out, pair, f"{type(result.error).__name__}: {result.error}"[:500])
    done = [p for p in todo if is_done(out, p)]
    for p in done:
        res = read_json(out / REPEATS_DIR / repeat_name(p["of"], p["seed"]) / "result.json")
        log(f"repeat of {p['of']} with seed {p['seed']} completed: objective {res.get('objective', float('nan')):.4f}")
    if failed:
        log(f"repeats: {failed} failed (logs: {out / REPEATS_DIR}/*/trial.log)")
    return len(done) + failed < len(todo)
