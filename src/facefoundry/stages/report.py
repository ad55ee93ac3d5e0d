"""``report`` stage: the leaderboard of the experiment's training runs, as table and picture.

The ranking rules live in ``facefoundry.leaderboard``; this stage reads the runs from MLflow
and writes ``leaderboard.{md,json,png}`` to ``report.out`` (not a DVC output: it names runs).
"""

from __future__ import annotations

from pathlib import Path

from facefoundry.config import Config
from facefoundry.io import atomic_write_json, atomic_write_text
from facefoundry.leaderboard import Leaderboard, build
from facefoundry.plots import save_figure, table_figure
from facefoundry.stages.common import log
from facefoundry.tracking import _mlflow, log_text, run_name, stage_run


def training_runs(experiment: str) -> list[dict]:
    """Finished training runs of ``experiment`` as plain records."""
    mlflow = _mlflow()
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list", max_results=5000,
                              filter_string="tags.`facefoundry.stage` = 'train' and attributes.status = 'FINISHED'")
    return [{"run_id": r.info.run_id, "params": dict(r.data.params), "metrics": dict(r.data.metrics),
             "tags": dict(r.data.tags)} for r in runs]


def leaderboard_figure(board: Leaderboard, title: str, top: int):  # noqa: ANN201
    header, rows = board.table(top)
    return table_figure(title, header, rows, caption=board.basis)


def run_report(cfg: Config) -> Path:
    rep = cfg.report
    with stage_run(cfg, "report", ["report"], name=run_name("report", rep.benchmark or "common benchmarks")):
        board = build(training_runs(cfg.base.experiment), rep.benchmark, rep.include_adhoc)
        md = board.markdown(rep.top)
        out = Path(rep.out)
        atomic_write_text(out / "leaderboard.md", md)
        atomic_write_json(out / "leaderboard.json", board.to_json())
        title = f"FaceFoundry leaderboard · {cfg.base.experiment}"
        save_figure(leaderboard_figure(board, title, rep.top), out / "leaderboard.png", dpi=130)
        _mlflow().log_artifact(str(out / "leaderboard.png"))  # the same picture, rendered once
        log_text(md, "leaderboard.md")
        log(f"leaderboard of {len(board.rows)} recipes written to {out}/leaderboard.md\n{md}")
        return out
