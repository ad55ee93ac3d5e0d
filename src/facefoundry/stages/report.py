"""``report`` stage and ``facefoundry leaderboard``: ranked recipes as table, page and picture.

The ranking rules live in ``facefoundry.leaderboard``. Two sources feed them:

- the ``report`` stage ranks the pipeline's own recipes (``datasets:``) from their metrics files under
  ``report.metrics`` — its DVC deps — so ``outputs/report/`` (``leaderboard.{md,json,png}`` and one ROC
  overlay of all recipes per benchmark) is a function of them: a declared DVC output, identical on every
  reproduction, and logged to the pipeline's MLflow group;
- ``facefoundry leaderboard`` ranks every training run in MLflow (sweeps, experiments, ad-hoc runs when
  asked), joined with their dataset's validate metrics and its cost (the ``generate`` run that wrote the same
  dataset version), into ``report.leaderboard_out``, with ``pareto.png``: accuracy against total seconds.
  The report stage's metrics files carry no cost, so it draws no front.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from facefoundry.config import Config
from facefoundry.errors import FaceFoundryError
from facefoundry.io import atomic_write_json, atomic_write_text, read_json
from facefoundry.leaderboard import ACC, Leaderboard, build, join_costs, join_data_metrics, parse_metric
from facefoundry.plots import pareto_figure, roc_figure, save_figure, table_figure
from facefoundry.stages.common import log
from facefoundry.tracking import _mlflow, log_artifact, log_figure, log_text, products_dir, run_name, set_tag, stage_run

FINISHED = "attributes.status = 'FINISHED'"


def _records(experiments: list[str], stage: str) -> list[dict]:
    mlflow = _mlflow()
    runs = mlflow.search_runs(
        experiment_names=experiments,
        output_format="list",
        max_results=5000,
        filter_string=f"tags.`facefoundry.stage` = '{stage}' and {FINISHED}",
        order_by=["attributes.start_time DESC"],
    )
    names: dict[str, str] = {}
    out = []
    for r in runs:
        eid = r.info.experiment_id
        if eid not in names:
            names[eid] = mlflow.MlflowClient().get_experiment(eid).name
        out.append(
            {
                "run_id": r.info.run_id,
                "params": dict(r.data.params),
                "metrics": dict(r.data.metrics),
                "tags": dict(r.data.tags),
                "experiment": names[eid],
            }
        )
    return out


def training_runs(experiment: str | list[str]) -> list[dict]:
    """Finished training runs of one or more experiments as plain records (newest first), each with
    the ``data/*`` metrics of its dataset's validate run and the ``cost/*`` seconds of the generate run that
    wrote it (both: same DVC hash, ``dataset.dvc_md5``) added."""
    names = [experiment] if isinstance(experiment, str) else list(experiment)
    runs = join_data_metrics(_records(names, "train"), _records(names, "validate"))
    return join_costs(runs, _records(names, "generate"))


PARETO = "pareto.png"


def pareto_of(board: Leaderboard, title: str):
    """Accuracy against total seconds, the front connected and labelled; None when no row has a total cost."""
    front = board.pareto()
    if not front.points:
        return None
    scale = 1.0 if board.metric.startswith("data/") else 100.0  # accuracies in percent, as the table
    points = [(r.recipe, c, scale * r.mean) for r, _, c in front.points]
    on = [(r.recipe, c, scale * r.mean) for r, _, c in front.points if front.on_front(r)]
    on.sort(key=lambda p: (p[1], -p[2]))
    n = front.without_cost
    left = f"{n} {'row' if n == 1 else 'rows'} without a total cost not shown. " if n else ""
    return pareto_figure(
        points,
        on,
        title=f"{title}: score vs cost",
        ylabel=board.ranked_column.replace(" %", " (%)"),
        caption=f"{left}Each point: a recipe's mean over its runs. {board.basis}",
    )


def leaderboard_figure(board: Leaderboard, title: str, top: int):
    """The table as a picture: n, the interval and the ``vs top`` markers beside the ranked column, ties with
    the top row shaded, and what the markers mean under it."""
    header, rows = board.table(top)
    ties = [i for i, r in enumerate(board.rows[: len(rows)]) if r.tie]
    return table_figure(title, header, rows, caption="\n".join([board.basis, *board.footnotes()]), shaded=ties)


def recipe_records(cfg: Config) -> list[dict]:
    """The pipeline's recipes as leaderboard records, from their metrics files (no MLflow): one per entry of
    ``datasets:`` that has ``<report.metrics>/<recipe>/eval/metrics.json``; ``data/*`` from its validate.json.
    Benchmark metrics are named back from the files' flat keys (``twins_accuracy`` → ``twins/accuracy``)."""
    root = Path(cfg.report.metrics)
    benches = sorted(cfg.evaluate.benchmarks, key=len, reverse=True)  # lfw_x before lfw when both exist
    out = []
    for recipe, dataset in cfg.datasets.items():
        flat = read_json(root / recipe / "eval" / "metrics.json")
        metrics: dict[str, float] = {}
        for key, value in flat.items():
            bench = next((b for b in benches if key.startswith(b + "_")), None)
            if bench is not None and isinstance(value, (int, float)):
                metrics[f"{bench}/{key[len(bench) + 1 :]}"] = float(value)
        metrics.update(
            {
                f"data/{k}": float(v)
                for k, v in read_json(root / recipe / "validate.json").items()
                if isinstance(v, (int, float))
            }
        )
        out.append(
            {
                "run_id": recipe,
                "params": {"train.dataset": dataset},
                "metrics": metrics,
                "tags": {"facefoundry.recipe": recipe},
            }
        )
    return out


def _roc_overlays(cfg: Config, board: Leaderboard) -> None:
    """One ROC figure per benchmark with every ranked recipe's curve (from its ``roc_<benchmark>.json``)."""
    root = Path(cfg.report.metrics)
    for bench in board.columns:
        curves = {}
        for row in board.rows:
            points = read_json(root / row.recipe / "eval" / f"roc_{bench}.json").get("roc") or []
            auc = read_json(root / row.recipe / "eval" / "metrics.json").get(f"{bench}_auc", float("nan"))
            if points:
                curves[row.recipe] = (
                    np.array([p["fpr"] for p in points]),
                    np.array([p["tpr"] for p in points]),
                    float(auc),
                )
        if curves:
            log_figure(roc_figure(curves), f"roc_{bench}.png")


def run_report(cfg: Config) -> Path:
    """The ``report`` stage: the pipeline's recipes, best first, into ``report.out`` and the MLflow run."""
    import json

    rep = cfg.report
    out = Path(rep.out)
    records = recipe_records(cfg)
    missing = [r["run_id"] for r in records if not any(k.endswith(ACC) for k in r["metrics"])]
    if len(missing) == len(records):  # before the run empties report.out
        raise FaceFoundryError(
            f"report: no recipe of datasets: ({', '.join(cfg.datasets)}) has been evaluated "
            f"yet (no {rep.metrics}/<recipe>/eval/metrics.json); run `dvc repro` first"
        )
    with stage_run(
        cfg, "report", ["report"], name=run_name("report", rep.benchmark or "common benchmarks"), products=out
    ):
        board = build(records, rep.benchmark, include_adhoc=True, alpha=rep.alpha, level=rep.level)
        title = f"FaceFoundry leaderboard · {cfg.base.experiment}"
        md = f"# {title}\n\n{board.markdown(rep.top)}"
        if missing:
            md += f"\nNot evaluated yet: {', '.join(missing)}.\n"
        log_text(md, "leaderboard.md")
        log_text(json.dumps(board.to_json(), indent=2, sort_keys=True) + "\n", "leaderboard.json")
        log_figure(leaderboard_figure(board, title, rep.top), "leaderboard.png")
        fig = pareto_of(board, title)  # the metrics files carry no cost: only where costs are known
        if fig is not None:
            log_figure(fig, PARETO)
        _roc_overlays(cfg, board)
        best = board.rows[0].recipe
        set_tag("facefoundry.leaderboard.best_recipe", best)
        log(f"leaderboard of {len(board.rows)} recipes (best: {best}) written to {products_dir()}/leaderboard.md")
        return out


def connect(cfg: Config) -> str:
    """Point MLflow at the configured store (``MLFLOW_TRACKING_URI`` wins, as in ``stage_run``)."""
    import os

    uri = os.environ.get("MLFLOW_TRACKING_URI", cfg.base.tracking_uri)
    _mlflow().set_tracking_uri(uri)
    return uri


def check_experiments(names: list[str]) -> None:
    """One line naming the experiments that do not exist (and those that do)."""
    client = _mlflow().MlflowClient()
    missing = [n for n in names if client.get_experiment_by_name(n) is None]
    if missing:
        known = sorted(e.name for e in client.search_experiments())
        raise FaceFoundryError(
            f"no MLflow experiment {', '.join(map(repr, missing))} in "
            f"{_mlflow().get_tracking_uri()} (experiments: {', '.join(known) or 'none'})"
        )


def print_board(board: Leaderboard, title: str, top: int | None) -> None:
    """A rich table on a terminal; the markdown table otherwise (pipes, logs, CI)."""
    if not sys.stdout.isatty():
        print(f"{title}\n\n{board.markdown(top)}", end="")
        return
    from rich.console import Console
    from rich.table import Table

    header, rows = board.table(top)
    table = Table(title=title, caption="\n".join([*board.notes(), *board.footnotes()]), caption_justify="left")
    ranked = board.ranked_column
    for h in header:
        table.add_column(
            h,
            style="bold cyan" if h == ranked else None,
            header_style="bold",
            justify="right" if h in ("rank", "n", board.ci_column) or h.endswith("%") else "left",
        )
    for r in rows:
        table.add_row(*r)
    console = Console()
    console.print(table)
    if board.excluded:
        console.print("Left out: " + ", ".join(f"{n} {why}" for why, n in board.excluded.items()) + ".")


def run_leaderboard(
    cfg: Config,
    experiments: list[str] | None = None,
    metric: str | None = None,
    top: int | None = None,
    include_adhoc: bool | None = None,
) -> Leaderboard:
    """``facefoundry leaderboard``: rank recipes across experiments; print, write and log the table."""
    rep = cfg.report
    names = list(dict.fromkeys(experiments or [cfg.base.experiment]))
    try:
        metric = parse_metric(metric, rep.benchmark)
    except ValueError as exc:
        raise FaceFoundryError(str(exc)) from None
    top = top or rep.top
    adhoc = rep.include_adhoc if include_adhoc is None else include_adhoc
    connect(cfg)
    check_experiments(names)
    board = build(training_runs(names), include_adhoc=adhoc, metric=metric, alpha=rep.alpha, level=rep.level)
    title = f"FaceFoundry leaderboard · {', '.join(names)}"
    out = Path(rep.leaderboard_out)
    md = f"# {title}\n\n{board.markdown(top)}"
    page = board.html(title, top)
    atomic_write_text(out / "leaderboard.md", md)
    atomic_write_text(out / "leaderboard.html", page)
    atomic_write_json(out / "leaderboard.json", board.to_json())
    fig = pareto_of(board, title)
    if fig is not None:  # written, then logged as those bytes
        save_figure(fig, out / PARETO)
    else:  # no costs known: no front (and none left from an earlier call)
        (out / PARETO).unlink(missing_ok=True)
    try:
        _log_leaderboard(cfg, board, names, metric, md, page, out / PARETO if fig is not None else None)
    except Exception as exc:  # a reader on an authenticated server reads the ranking, and may not log it
        from facefoundry.tracking.access import access_failure

        why = access_failure(exc)
        if why is None or "403" not in why:
            raise
        log(f"note: the leaderboard was not logged to MLflow: {why}")
    print_board(board, title, top)
    log(f"leaderboard of {len(board.rows)} recipes written to {out}/leaderboard.{{md,html,json}}")
    return board


def _log_leaderboard(
    cfg: Config, board: Leaderboard, names: list[str], metric: str, md: str, page: str, pareto: Path | None
) -> None:
    """The leaderboard as an MLflow run: its table, page, Pareto front and best recipe."""
    with stage_run(cfg, "leaderboard", ["report"], name=run_name("leaderboard", metric, *names)):
        log_text(md, "leaderboard.md")
        log_text(page, "leaderboard.html")
        if pareto is not None:
            log_artifact(pareto)
        mlflow = _mlflow()
        mlflow.set_tags(
            {"facefoundry.leaderboard.metric": metric, "facefoundry.leaderboard.experiments": ",".join(names)}
        )
        if board.rows:
            row, run_id, _ = board.best()
            mlflow.set_tags(
                {"facefoundry.leaderboard.best_recipe": row.recipe, "facefoundry.leaderboard.best_run": run_id}
            )
