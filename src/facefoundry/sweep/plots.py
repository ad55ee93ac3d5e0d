"""Sweep figures: the objective against each swept parameter, parallel coordinates, Optuna importance."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from facefoundry.plots import save_figure
from facefoundry.sweep.spec_model import Sweep

_MARKERS = {"completed": ("o", "tab:blue"), "stopped": ("v", "tab:orange")}


def _numeric(values: list[Any]) -> tuple[list[float], list[str] | None]:
    """Plot positions for a parameter's values: numbers as they are, anything else as category indices."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values], None
    cats = sorted({json.dumps(v) for v in values})
    return [float(cats.index(json.dumps(v))) for v in values], cats


def _scored(rows: list[dict]) -> list[dict]:
    return [
        r
        for r in rows
        if r["status"] in _MARKERS and isinstance(r["objective"], (int, float)) and math.isfinite(r["objective"])
    ]


def objective_vs_params(sweep: Sweep, rows: list[dict]):
    keys = list(sweep.dims)
    scored = _scored(rows)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        have = [r for r in scored if key in r["params"]]
        xs, cats = _numeric([r["params"][key] for r in have])
        for status, (marker, colour) in _MARKERS.items():
            idx = [i for i, r in enumerate(have) if r["status"] == status]
            if idx:
                ax.scatter(
                    [xs[i] for i in idx],
                    [have[i]["objective"] for i in idx],
                    marker=marker,
                    c=colour,
                    label=status if status == "completed" else "stopped early (ASHA)",
                    alpha=0.85,
                )
        if cats:
            ax.set_xticks(range(len(cats)), cats, rotation=30, fontsize=7)
        if sweep.dims[key].type == "loguniform":
            ax.set_xscale("log")
        ax.set_xlabel(key, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(sweep.spec.objective.metric)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"sweep {sweep.name}: objective against each parameter", fontsize=9)
    fig.tight_layout()
    return fig


def parallel_coordinates(sweep: Sweep, rows: list[dict]):
    keys = list(sweep.dims)
    scored = [r for r in _scored(rows) if all(k in r["params"] for k in keys)]
    axes_names = [*keys, sweep.spec.objective.metric]
    fig, ax = plt.subplots(figsize=(max(4.0, 2.2 * len(axes_names)), 3.6))
    if scored:
        cols = []
        for key in keys:
            xs, _ = _numeric([r["params"][key] for r in scored])
            if sweep.dims[key].type == "loguniform":
                xs = [math.log10(x) for x in xs]
            cols.append(xs)
        cols.append([r["objective"] for r in scored])
        data = np.asarray(cols, dtype=float)
        lo, hi = data.min(axis=1, keepdims=True), data.max(axis=1, keepdims=True)
        norm = (data - lo) / np.where(hi > lo, hi - lo, 1.0)
        obj = data[-1]
        cmap = plt.get_cmap("viridis")
        span = (obj.max() - obj.min()) or 1.0
        for j, r in enumerate(scored):
            ax.plot(
                range(len(axes_names)),
                norm[:, j],
                color=cmap((obj[j] - obj.min()) / span),
                linestyle="-" if r["status"] == "completed" else ":",
                alpha=0.9,
            )
        for i, name in enumerate(axes_names):
            log = name in sweep.dims and sweep.dims[name].type == "loguniform"
            lo_v, hi_v = (10 ** data[i].min(), 10 ** data[i].max()) if log else (data[i].min(), data[i].max())
            ax.annotate(
                f"{lo_v:.3g}", (i, 0), fontsize=7, ha="center", va="top", xytext=(0, -2), textcoords="offset points"
            )
            ax.annotate(
                f"{hi_v:.3g}", (i, 1), fontsize=7, ha="center", va="bottom", xytext=(0, 2), textcoords="offset points"
            )
    ax.set_xticks(
        range(len(axes_names)),
        [a + (" (log)" if a in sweep.dims and sweep.dims[a].type == "loguniform" else "") for a in axes_names],
        fontsize=8,
        rotation=15,
    )
    ax.set_ylim(-0.08, 1.08)
    ax.set_yticks([])
    for i in range(len(axes_names)):
        ax.axvline(i, color="grey", lw=0.6)
    ax.set_title(f"sweep {sweep.name}: parallel coordinates (colour = objective; dotted = stopped early)", fontsize=9)
    fig.tight_layout()
    return fig


def optuna_importance(sweep: Sweep, rows: list[dict]) -> tuple[dict[str, float], str]:
    """fANOVA importance (``optuna.importance``) on a study rebuilt from the completed trials (with fewer than
    3 of those: from every scored trial, a stopped one counting with its last validation accuracy).

    Returns the importances and which trials they rest on."""
    import optuna
    from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scored = [r for r in _scored(rows) if all(k in r["params"] for k in sweep.dims)]
    done = [r for r in scored if r["status"] == "completed"]
    basis = "completed trials"
    if len(done) < 3:
        done, basis = scored, "all trials; stopped ones at their last validation accuracy"
    if len(done) < 2:
        return {}, basis
    dists: dict[str, BaseDistribution] = {}
    enc: dict[str, bool] = {}
    for key, d in sweep.dims.items():
        if d.type == "uniform":
            dists[key] = FloatDistribution(*d.bounds())
        elif d.type == "loguniform":
            dists[key] = FloatDistribution(*d.bounds(), log=True)
        elif d.type in ("int", "randint"):
            dists[key] = IntDistribution(*d.int_bounds())
        else:
            enc[key] = d.encoded
            dists[key] = CategoricalDistribution([json.dumps(v) if d.encoded else v for v in d.choices()])
    study = optuna.create_study(direction="maximize" if sweep.spec.objective.mode == "max" else "minimize")
    for r in done:
        params = {k: json.dumps(v) if enc.get(k) else v for k, v in r["params"].items() if k in dists}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(r["objective"])))
    if len({r["objective"] for r in done}) < 2:
        return {}, basis
    return dict(optuna.importance.get_param_importances(study)), basis


def importance_figure(sweep: Sweep, importance: dict[str, float], basis: str = "completed trials"):
    fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.45 * max(1, len(importance))))
    names = list(importance)[::-1]
    ax.barh(names, [importance[n] for n in names], color="tab:blue")
    ax.set_xlabel(f"importance (Optuna fANOVA; {basis})", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_title(f"sweep {sweep.name}: parameter importance for {sweep.spec.objective.metric}", fontsize=9)
    fig.tight_layout()
    return fig


def front_figure(sweep: Sweep, rows: list[dict]):
    """Several objectives: the first two against each other, every completed trial, the Pareto front joined."""
    from facefoundry.sweep.objectives import values_of

    o0, o1 = sweep.spec.all_objectives[:2]
    done = [(r, v) for r in rows if r["status"] == "completed" for v in [values_of(sweep.spec, r)] if v is not None]
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    off = [(r, v) for r, v in done if not r.get("on_front")]
    on = sorted([(r, v) for r, v in done if r.get("on_front")], key=lambda rv: rv[1][1])
    if off:
        ax.scatter([v[1] for _, v in off], [v[0] for _, v in off], c="tab:gray", alpha=0.7, label="dominated")
    if on:
        ax.plot([v[1] for _, v in on], [v[0] for _, v in on], "o-", c="tab:red", label="Pareto front")
        for r, v in on:
            ax.annotate(str(r["number"]), (v[1], v[0]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"{o1.metric} ({o1.mode})", fontsize=8)
    ax.set_ylabel(f"{o0.metric} ({o0.mode})", fontsize=8)
    ax.legend(fontsize=7)
    ax.set_title(
        f"sweep {sweep.name}: Pareto front of {len(done)} completed trials (labels: trial numbers)", fontsize=9
    )
    fig.tight_layout()
    return fig


def sweep_plots(sweep: Sweep, rows: list[dict], out: Path) -> list[Path]:
    """Write the figures to ``out`` (PNG); returns their paths."""
    paths: list[Path] = []
    if not _scored(rows):
        return paths
    if sweep.spec.objectives:
        save_figure(front_figure(sweep, rows), out / "pareto_front.png")
        paths.append(out / "pareto_front.png")
    for name, fig in (
        ("objective_vs_params.png", objective_vs_params(sweep, rows)),
        ("parallel_coordinates.png", parallel_coordinates(sweep, rows)),
    ):
        save_figure(fig, out / name)
        paths.append(out / name)
    try:
        imp, basis = optuna_importance(sweep, rows)
    except Exception:  # e.g. too few distinct trials for fANOVA
        imp, basis = {}, ""
    if imp:
        save_figure(importance_figure(sweep, imp, basis), out / "param_importance.png")
        paths.append(out / "param_importance.png")
        (out / "param_importance.json").write_text(json.dumps({"importance": imp, "basis": basis}, indent=2))
        paths.append(out / "param_importance.json")
    return paths
