"""``report`` stage: a leaderboard of every training run in the experiment, as table and picture."""

from __future__ import annotations

import io
from pathlib import Path

from facefoundry.config import Config
from facefoundry.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from facefoundry.plots import table_figure
from facefoundry.stages.common import log
from facefoundry.tracking import _mlflow, log_figure, log_text, stage_run


def leaderboard(experiment: str, top: int) -> tuple[list[str], list[list[str]]]:
    mlflow = _mlflow()
    runs = mlflow.search_runs(experiment_names=[experiment], filter_string="tags.`facefoundry.stage` = 'train'",
                              output_format="list", max_results=1000)
    runs = [r for r in runs if "mean_accuracy" in r.data.metrics]
    runs.sort(key=lambda r: r.data.metrics["mean_accuracy"], reverse=True)
    benches = sorted({k.split("/")[0] for r in runs for k in r.data.metrics if k.endswith("/accuracy") and not
                      k.startswith("train/")})
    header = ["rank", "run", "dataset", "data md5", "backbone", "head", "epochs", *benches, "mean"]
    rows = []
    for i, r in enumerate(runs[:top], 1):
        p, m, t = r.data.params, r.data.metrics, r.data.tags
        rows.append([str(i), r.info.run_id[:8], Path(p.get("train.dataset", "?")).name,
                     t.get("dataset.dvc_md5", "?")[:8], p.get("train.backbone.name", "?"),
                     p.get("train.head.name", "?"), p.get("train.epochs", "?"),
                     *[f"{m[b + '/accuracy']:.4f}" if b + "/accuracy" in m else "—" for b in benches],
                     f"{m['mean_accuracy']:.4f}"])
    return header, rows


def run_report(cfg: Config) -> Path:
    with stage_run(cfg, "report", ["report"]):
        header, rows = leaderboard(cfg.base.experiment, cfg.report.top)
        md = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
        md += "".join("| " + " | ".join(r) + " |\n" for r in rows)
        out = Path(cfg.report.out)
        atomic_write_text(out / "leaderboard.md", md)
        atomic_write_json(out / "leaderboard.json", {"header": header, "rows": rows})
        fig = table_figure(f"FaceFoundry leaderboard — {cfg.base.experiment}", header, rows)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        atomic_write_bytes(out / "leaderboard.png", buf.getvalue())
        log_figure(fig, "leaderboard.png")
        log_text(md, "leaderboard.md")
        log(f"leaderboard of {len(rows)} runs written to {out}/leaderboard.md\n{md}")
        return out
