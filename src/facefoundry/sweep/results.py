"""What a sweep leaves: one row per trial collected from the trial folders, the results table (``results.md``,
``.json``, ``.csv``), the comparison plots, and the summary on the sweep's MLflow run.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facefoundry.io import atomic_write_json, atomic_write_text, read_json
from facefoundry.stages.common import log
from facefoundry.sweep.objectives import fmt_value
from facefoundry.sweep.spec_model import Sweep
from facefoundry.sweep.trial import COMPLETED, FAILED, STOPPED, TRIAL_STATUS


@dataclass
class SweepOutcome:
    out: Path
    run_id: str
    rows: list[dict] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    best: dict | None = None
    front: list[dict] | None = None  # several objectives: the completed trials no other one dominates
    repeats: dict | None = None  # the candidates' summaries over FR seeds and the winner (spec ``repeats``)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def collect(sweep: Sweep, out: Path) -> list[dict]:
    """One row per trial from the trial folders (params, status, objective, epochs, times)."""
    rows = []
    for folder in sorted((out / "trials").glob("*")):
        info = read_json(folder / "trial.json")
        if not info:
            continue
        st, res = read_json(folder / TRIAL_STATUS), read_json(folder / "result.json")
        status = st.get("status", "unfinished")
        if status == "running":
            status = "unfinished"
        row = {
            "trial": folder.name,
            "number": info.get("number"),
            "params": info.get("params", {}),
            "status": status,
            "epoch": res.get("epoch", st.get("epoch")),
            "objective": res.get("objective", st.get("objective")),
            "objectives": [res.get(k) for k in sweep.spec.objective_keys],
            "val_accuracy": res.get("val_accuracy"),
            "dataset": info.get("dataset_key"),
            "run_id": info.get("run_id"),
            "error": st.get("error"),
            "attempts": len((folder / "attempts.log").read_text().splitlines())
            if (folder / "attempts.log").is_file()
            else 0,
            "accuracies": {k[4:]: v for k, v in res.items() if k.startswith("acc/")},
            "seconds": {k: v for k, v in res.items() if k.endswith("_seconds") and not k.startswith("cost/")},
            "cost": {k: v for k, v in res.items() if k.startswith("cost/")},
            "driver_seconds": (st["ended"] - st["started"]) if st.get("ended") and st.get("started") else None,
        }
        rows.append(row)
    rows.sort(key=lambda r: (r["number"] if r["number"] is not None else 1 << 30, r["trial"]))
    return rows


def results_table(sweep: Sweep, rows: list[dict]) -> str:
    keys = list(sweep.dims)
    benches = sorted({b for r in rows for b in r["accuracies"]})
    head = [
        "#",
        "trial",
        *[k.rsplit(".", 1)[-1] for k in keys],
        "status",
        "epochs",
        "objective",
        *[o.metric for o in sweep.spec.objectives[1:]],
        *(["front"] if sweep.spec.objectives else []),
        *[f"{b} acc" for b in benches],
        "dataset",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        obj = r["objective"]
        cells = [
            str(r["number"]),
            r["trial"],
            *[_fmt(r["params"].get(k, "")) for k in keys],
            r["status"],
            str(r["epoch"] or "–"),
            f"{obj:.4f}" if isinstance(obj, (int, float)) else "–",
            *[fmt_value(v) for v in (r.get("objectives") or [])[1:]],
            *(["★" if r.get("on_front") else ""] if sweep.spec.objectives else []),
            *[f"{r['accuracies'][b]:.4f}" if b in r["accuracies"] else "–" for b in benches],
            (r["dataset"] or "")[:8],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _finish(sweep: Sweep, out: Path, client, run_id: str, outcome: SweepOutcome) -> None:
    from mlflow.entities import Metric

    rows = collect(sweep, out)
    outcome.rows = rows
    mode = sweep.spec.objective.mode
    done = [r for r in rows if r["status"] == COMPLETED and isinstance(r["objective"], (int, float))]
    if done:
        outcome.best = (max if mode == "max" else min)(done, key=lambda r: r["objective"])
    rtable = ""
    if sweep.spec.repeats is not None:
        from facefoundry.sweep.repeats import collect_repeats, repeats_table, row_columns, summarise_repeats

        outcome.repeats = summarise_repeats(sweep, rows, collect_repeats(out))
        for r in rows:
            r.update(row_columns(outcome.repeats, r["trial"]))
        if outcome.repeats:  # the winner: the best mean over the original run and its repeats
            outcome.best = next(r for r in rows if r["trial"] == outcome.repeats["winner"])
            rtable = repeats_table(outcome.repeats)
            atomic_write_text(out / "repeats.md", rtable)
    ftable = ""
    if sweep.spec.objectives:  # several objectives: the Pareto front of the completed trials
        from facefoundry.sweep.objectives import front_table, pareto_rows

        outcome.front = pareto_rows(sweep.spec, rows, (COMPLETED,))
        on_front = {r["trial"] for r in outcome.front}
        for r in rows:
            r["on_front"] = r["trial"] in on_front
        ftable = front_table(sweep.spec, outcome.front, list(sweep.dims))
        atomic_write_text(out / "front.md", ftable)
    counts = {s: sum(r["status"] == s for r in rows) for s in (COMPLETED, STOPPED, FAILED, "unfinished")}
    table = results_table(sweep, rows)
    atomic_write_text(out / "results.md", table)
    atomic_write_json(
        out / "results.json",
        {
            "rows": rows,
            "best": outcome.best,
            "counts": counts,
            "seconds": outcome.seconds,
            "interrupted": outcome.interrupted,
            **({"repeats": outcome.repeats} if sweep.spec.repeats is not None else {}),
            **({"front": [r["trial"] for r in outcome.front]} if outcome.front is not None else {}),
        },
    )
    _write_csv(sweep, rows, out / "results.csv")
    print(table + (f"\n{rtable}" if rtable else "") + (f"\nPareto front:\n{ftable}" if ftable else ""), end="")
    sys.stdout.flush()
    try:
        from facefoundry.sweep.plots import sweep_plots

        figures = sweep_plots(sweep, rows, out / "plots")
    except Exception as exc:  # a figure must never lose the results
        log(f"note: sweep plots failed: {type(exc).__name__}: {exc}")
        figures = []
    try:
        now = int(time.time() * 1000)
        metrics = {f"trials_{k}": float(v) for k, v in counts.items()}
        metrics["wall_seconds"] = outcome.seconds
        if outcome.best:
            metrics["best_objective"] = float(outcome.best["objective"])
            client.set_tag(run_id, "facefoundry.best_trial", outcome.best["trial"])
            if outcome.best.get("run_id"):
                client.set_tag(run_id, "facefoundry.best_trial_run_id", outcome.best["run_id"])
        if outcome.front is not None:
            metrics["front_size"] = float(len(outcome.front))
        if outcome.repeats:
            metrics.update(_repeat_metrics(outcome.repeats))
            client.set_tag(run_id, "facefoundry.best_single_trial", outcome.repeats["best_single"])
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
        client.log_text(run_id, table, "sweep_results.md")
        if rtable:
            client.log_text(run_id, rtable, "sweep_repeats.md")
        if ftable:
            client.log_text(run_id, ftable, "sweep_front.md")
            client.set_tag(run_id, "facefoundry.front", ",".join(r["trial"] for r in outcome.front or []))
        client.log_artifact(run_id, str(out / "results.json"))
        client.log_artifact(run_id, str(out / "results.csv"))
        for fig in figures:
            client.log_artifact(run_id, str(fig), "plots")
        client.set_terminated(run_id, "KILLED" if outcome.interrupted else "FINISHED")
    except Exception as exc:
        log(f"note: could not log the sweep summary to MLflow run {run_id}: {type(exc).__name__}: {exc}")
    best = outcome.best
    log(
        f"sweep {sweep.name}: {counts[COMPLETED]} completed, {counts[STOPPED]} stopped early by ASHA, "
        f"{counts[FAILED]} failed"
        + (f", {counts['unfinished']} unfinished" if counts["unfinished"] else "")
        + f" in {outcome.seconds:.0f}s"
        + (
            f"; best trial {best['trial']}: {sweep.spec.objective.metric} "
            f"{best['objective']:.4f} ({', '.join(f'{k}={_fmt(v)}' for k, v in best['params'].items())})"
            if best
            else ""
        )
        + (_repeat_line(outcome.repeats) if outcome.repeats else "")
        + f"; MLflow run {run_id}"
    )


def _repeat_metrics(summary: dict) -> dict[str, float]:
    """The parent run's metrics of the repeats: per candidate n, mean, std, t-interval; the winner's mean."""
    metrics: dict[str, float] = {"repeats_completed": float(summary["completed"])}
    for c in summary["candidates"]:
        for k in ("n", "mean", "std", "ci_low", "ci_high"):
            metrics[f"repeat/{c['trial']}/{k}"] = float(c[k])
        if c["winner"]:
            metrics["best_repeat_mean"] = float(c["mean"])
    return metrics


def _repeat_line(summary: dict) -> str:
    win = next(c for c in summary["candidates"] if c["winner"])
    note = "" if win["trial"] == summary["best_single"] else f", not the best single run {summary['best_single']}"
    return f"; winner on the mean over {win['n']} FR seed(s): {win['trial']} {win['mean']:.4f} ± {win['std']:.4f}{note}"


REPEAT_COLUMNS = ("repeat_n", "repeat_mean", "repeat_std", "repeat_ci_low", "repeat_ci_high", "winner")


def _write_csv(sweep: Sweep, rows: list[dict], path: Path) -> None:
    import csv
    import io

    keys = list(sweep.dims)
    extra = list(REPEAT_COLUMNS) if sweep.spec.repeats is not None else []
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        ["trial", "number", *keys, "status", "epoch", "objective", "val_accuracy", "dataset", "attempts", *extra]
    )
    for r in rows:
        w.writerow(
            [
                r["trial"],
                r["number"],
                *[json.dumps(r["params"].get(k)) for k in keys],
                r["status"],
                r["epoch"],
                r["objective"],
                r["val_accuracy"],
                r["dataset"],
                r["attempts"],
                *[r.get(c) for c in extra],
            ]
        )
    atomic_write_text(path, buf.getvalue())
