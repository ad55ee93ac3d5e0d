"""``evaluate`` stage: every configured benchmark, 10-fold accuracy, TAR@FAR, ROC, histograms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from facefoundry.config import Config
from facefoundry.device import resolve_device
from facefoundry.errors import FaceFoundryError
from facefoundry.io import atomic_write_json
from facefoundry.models.bundle import FRModel
from facefoundry.plots import roc_figure, score_histogram
from facefoundry.stages.common import log
from facefoundry.tracking import log_figure, log_metrics, log_metrics_to_run, stage_run
from facefoundry.verification.binfile import read_bin
from facefoundry.verification.protocol import VerificationResult, run_benchmark


def evaluate_model(model: FRModel, benchmarks: dict[str, str], cfg: Config) -> list[VerificationResult]:
    """Pure evaluation (no tracking): load → embed with flip → k-fold, per benchmark."""
    e = cfg.evaluate
    missing = [f"evaluate.benchmarks.{k}: {p}" for k, p in benchmarks.items() if not Path(p).is_file()]
    if missing:
        raise FaceFoundryError(f"benchmark file does not exist ({'; '.join(missing)})")
    device = resolve_device(cfg.base.device)
    backbone = model.backbone.to(device).eval()
    results = []
    for name, path in benchmarks.items():
        pairs = read_bin(path, model.preprocess.image_size)
        pairs.name = name
        res = run_benchmark(backbone.embed_raw, pairs, model.preprocess, e.batch_size, e.flip, device,
                            e.nfolds, e.distance, e.far_targets)
        log(f"{name}: accuracy {res.accuracy:.4f} ± {res.accuracy_std:.4f} over {res.pairs} pairs, "
            f"AUC {res.auc:.4f}, " + ", ".join(f"TAR@FAR={f:g} {t:.3f}" for f, t in res.tar_at_far.items()))
        results.append(res)
    return results


def run_evaluate(cfg: Config) -> dict:
    model = FRModel.load(cfg.evaluate.model)
    train_run = model.info.get("mlflow_run_id")
    with stage_run(cfg, "evaluate", ["evaluate"], {"facefoundry.train_run_id": str(train_run)}):
        with torch.inference_mode():
            results = evaluate_model(model, cfg.evaluate.benchmarks, cfg)
        metrics: dict[str, float] = {}
        for r in results:
            metrics.update(r.metrics())
            log_figure(score_histogram(r.name, r.pos_scores, r.neg_scores, r.threshold), f"plots/hist_{r.name}.png")
        metrics["mean_accuracy"] = float(np.mean([r.accuracy for r in results]))
        log_metrics(metrics)
        log_figure(roc_figure({r.name: (r.fpr, r.tpr, r.auc) for r in results}), "plots/roc.png")
        out = Path(cfg.evaluate.out)
        atomic_write_json(out / "metrics.json", {k.replace("/", "_"): v for k, v in metrics.items()})
        atomic_write_json(out / "roc.json", {"roc": [{"benchmark": r.name, "fpr": float(f), "tpr": float(t)}
                                                      for r in results for f, t in _thin(r.fpr, r.tpr)]})
        atomic_write_json(out / "folds.json", {r.name: r.fold_accuracies for r in results})
    if train_run:  # the training run carries its accuracies too, so leaderboards sort training runs
        try:
            log_metrics_to_run(train_run, metrics)
        except Exception as exc:  # noqa: BLE001 - the training run may live in another store
            log(f"could not add metrics to training run {train_run}: {exc.__class__.__name__}")
    return metrics


def _thin(fpr: np.ndarray, tpr: np.ndarray, n: int = 200) -> list[tuple[float, float]]:
    """At most ``n`` ROC points (DVC plots stay small), always keeping the ends."""
    idx = np.unique(np.linspace(0, len(fpr) - 1, min(n, len(fpr))).astype(int))
    return list(zip(fpr[idx], tpr[idx]))
