"""``evaluate`` stage: every configured benchmark, 10-fold accuracy, TAR@FAR, ROC, histograms.

What is scored is either the trained FR model (``evaluate.model``: a model folder, or a released
insightface model — an arcface_torch ``backbone.pth`` with ``evaluate.arch``, or an ``.onnx``), or,
with ``--encoder``, one or more pretrained identity encoders (``facefoundry.identity``) through the
same protocol.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from facefoundry.config import Config
from facefoundry.data.transforms import resize_uint8
from facefoundry.device import resolve_device
from facefoundry.errors import FaceFoundryError
from facefoundry.io import atomic_write_json
from facefoundry.models.bundle import FRModel
from facefoundry.plots import roc_figure, save_figure, score_histogram
from facefoundry.stages.common import log
from facefoundry.stages.train import run_record
from facefoundry.tracking import (
    attach_model_metrics,
    log_artifact,
    log_figure,
    log_metrics,
    log_metrics_to_run,
    log_text,
    run_name,
    stage_run,
)
from facefoundry.verification.binfile import read_bin
from facefoundry.verification.protocol import VerificationResult, embed, evaluate_pairs

if TYPE_CHECKING:
    from facefoundry.models.released import OnnxModel

RELEASED_SUFFIXES = (".pth", ".pt", ".onnx")  # evaluate.model as a released file rather than a model folder
Embedder = Callable[[np.ndarray, str], np.ndarray]  # (uint8 [N,H,W,3], progress label) → unit vectors [N,D]


def parse_benchmarks(items: list[str]) -> dict[str, str]:
    """``["real=path.bin", "lfw.bin"]`` → ``{"real": "path.bin", "lfw": "lfw.bin"}`` (name defaults to the stem)."""
    out: dict[str, str] = {}
    for item in items:
        name, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        name = name or Path(path).stem
        if not path:
            raise FaceFoundryError(f"--benchmark {item!r}: expected NAME=PATH.bin or PATH.bin")
        out[name] = path
    return out


def check_benchmark_files(benchmarks: dict[str, str], where: str = "evaluate.benchmarks.") -> None:
    missing = [f"{where}{k}: {p}" for k, p in benchmarks.items() if not Path(p).is_file()]
    if missing:
        raise FaceFoundryError(f"benchmark file does not exist ({'; '.join(missing)})")


def evaluate_embedder(
    embedder: Embedder,
    benchmarks: dict[str, str],
    cfg: Config,
    image_size: int | None = None,
    label: str = "model",
    where: str = "evaluate.benchmarks.",
) -> list[VerificationResult]:
    """Pure evaluation (no tracking): read each ``.bin`` → embed → k-fold, TAR@FAR, ROC.

    ``where`` names where the benchmark list came from, for error messages.
    """
    import time

    e = cfg.evaluate
    check_benchmark_files(benchmarks, where)
    loaded = {name: read_bin(path, image_size) for name, path in benchmarks.items()}  # every file is checked
    small = [
        f"{benchmarks[n]}: {len(p.issame)} pairs cannot be split into {e.nfolds} folds (evaluate.nfolds)"
        for n, p in loaded.items()
        if len(p.issame) < e.nfolds
    ]
    if small:
        raise FaceFoundryError("; ".join(small))
    results = []  # before any is scored
    for name, pairs in loaded.items():
        t0 = time.perf_counter()
        emb = embedder(pairs.images, f"{label} on {name}")
        res = evaluate_pairs(name, emb, pairs.issame, e.nfolds, e.distance, e.far_targets)
        res.embed_seconds = time.perf_counter() - t0
        log(
            f"{label} on {name}: accuracy {res.accuracy:.4f} ± {res.accuracy_std:.4f} over {res.pairs} pairs, "
            f"AUC {res.auc:.4f}, " + ", ".join(f"TAR@FAR={f:g} {t:.3f}" for f, t in res.tar_at_far.items())
        )
        results.append(res)
    return results


def model_embedder(model: FRModel | OnnxModel, cfg: Config) -> Embedder:
    """The model's embedding of benchmark crops, resized to its input side when they differ.

    An ONNX model (``models.released.OnnxModel``) runs in onnxruntime; its inputs stay on the CPU.
    """
    if isinstance(model, FRModel):
        device = resolve_device(cfg.base.device)
        forward = model.backbone.to(device).eval().embed_raw
    else:
        device, forward = torch.device("cpu"), model.embed_raw
    e, size = cfg.evaluate, model.preprocess.image_size

    def run(images: np.ndarray, desc: str = "") -> np.ndarray:
        if images.shape[1] != size:
            log(
                f"warning: resizing {images.shape[1]}-px benchmark crops to the model's {size} px "
                "(as insightface does for non-native sizes; evaluate.resize: false to refuse)"
            )
        return embed(forward, resize_uint8(images, size), model.preprocess, e.batch_size, e.flip, device, desc)

    return run


def encoder_embedder(encoder, cfg: Config) -> Embedder:
    encoder.to(resolve_device(cfg.base.device))

    def run(images: np.ndarray, desc: str = "") -> np.ndarray:
        return encoder.embed(images, cfg.evaluate.batch_size, cfg.evaluate.flip, desc)

    return run


def evaluate_model(
    model: FRModel | OnnxModel, benchmarks: dict[str, str], cfg: Config, where: str = "evaluate.benchmarks."
) -> list[VerificationResult]:
    """The trained FR model on every benchmark (crops of another side are resized to the model's)."""
    native = None if cfg.evaluate.resize else model.preprocess.image_size  # refuse other sizes when loading
    return evaluate_embedder(model_embedder(model, cfg), benchmarks, cfg, native, where=where)


def results_table(rows: list[tuple[str, VerificationResult]]) -> str:
    """A markdown table: one row per (scored model, benchmark)."""
    fars = sorted({f for _, r in rows for f in r.tar_at_far}, reverse=True)
    head = ["model", "benchmark", "pairs", "accuracy", "AUC", *[f"TAR@FAR={f:g}" for f in fars]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for who, r in rows:
        cells = [
            who,
            r.name,
            str(r.pairs),
            f"{100 * r.accuracy:.2f} ± {100 * r.accuracy_std:.2f} %",
            f"{r.auc:.4f}",
            *[f"{r.tar_at_far[f]:.3f}" if f in r.tar_at_far else "–" for f in fars],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _log_results(results: list[VerificationResult], prefix: str = "") -> dict[str, float]:
    metrics: dict[str, float] = {}
    for r in results:
        metrics.update({prefix + k: v for k, v in r.metrics().items()})
        log_figure(
            score_histogram(prefix + r.name, r.pos_scores, r.neg_scores, r.threshold),
            f"plots/hist_{prefix.replace('/', '_')}{r.name}.png",
        )
    metrics[prefix + "mean_accuracy"] = float(np.mean([r.accuracy for r in results]))
    return metrics


def _write_outputs(out: Path, metrics: dict[str, float], labelled: list[tuple[str, VerificationResult]]) -> None:
    """DVC metrics and plots: ``metrics.json``, one ``roc_<benchmark>.json`` per benchmark (FAR
    floored at 1e-4 for the log axis), ``roc.png`` (viewable offline, and logged to the run as
    ``plots/roc.png``: rendered once) and the fold accuracies."""
    atomic_write_json(out / "metrics.json", {k.replace("/", "_"): v for k, v in metrics.items()})
    for who, r in labelled:
        key = f"{who}_{r.name}" if who else r.name
        atomic_write_json(
            out / f"roc_{key}.json",
            {"roc": [{"fpr": max(float(f), 1e-4), "tpr": float(t)} for f, t in _thin(r.fpr, r.tpr)]},
        )
    atomic_write_json(
        out / "folds.json", {(f"{who}/{r.name}" if who else r.name): r.fold_accuracies for who, r in labelled}
    )
    fig = roc_figure({(f"{who}/{r.name}" if who else r.name): (r.fpr, r.tpr, r.auc) for who, r in labelled})
    save_figure(fig, out / "roc.png")
    log_artifact(out / "roc.png", "plots")


def default_products(cfg: Config, encoders: list[str] | None = None) -> Path:
    """``outputs/eval/<recipe>``: the folder of a model's training run (``outputs/train/<recipe>/model``), else
    the model file's stem, or ``encoders`` when pretrained encoders are scored."""
    if encoders:
        return Path("outputs/eval/encoders")
    model = Path(cfg.evaluate.model)
    return Path("outputs/eval") / (model.parent.name if model.name == "model" and model.parent.name else model.stem)


def run_evaluate(
    cfg: Config,
    encoders: list[str] | None = None,
    benchmarks: list[str] | None = None,
    products: str | Path | None = None,
) -> dict:
    """Score the trained model, or each ``--encoder``, on the configured (or ``--benchmark``) files.

    DVC metrics and plots go to ``evaluate.out``; histograms and the results table to ``products``
    (and to the MLflow run)."""
    benches = parse_benchmarks(benchmarks) if benchmarks else dict(cfg.evaluate.benchmarks)
    where = "--benchmark " if benchmarks else "evaluate.benchmarks."
    if not benches:
        raise FaceFoundryError(
            "no benchmark to evaluate on: evaluate.benchmarks is empty (add NAME=PATH.bin "
            "with --benchmark or --set evaluate.benchmarks.NAME=PATH.bin)"
        )
    if encoders:
        return _run_encoders(cfg, encoders, benches, where, products)
    if Path(cfg.evaluate.model).suffix.lower() in RELEASED_SUFFIXES and not Path(cfg.evaluate.model).is_dir():
        return _run_released(cfg, benches, where, products)
    model = FRModel.load(cfg.evaluate.model)
    record = run_record(cfg.evaluate.model)  # the training run's side file (never a DVC output)
    train_run, recipe = record.get("run_id"), record.get("recipe") or model.info.get("recipe")
    tags = {"facefoundry.train_run_id": str(train_run), "facefoundry.recipe": str(recipe)}
    check_benchmark_files(benches, where)  # the model first, then the benchmarks: both before the run opens
    with stage_run(cfg, "evaluate", ["evaluate"], tags, name=run_name("evaluate", recipe, *benches), products=products):
        with torch.inference_mode():
            results = evaluate_model(model, benches, cfg, where)
        metrics = _report(cfg, results)
        if record.get("fingerprint") == model.info.get("fingerprint"):
            attach_model_metrics(record, metrics)  # the logged model and its registry version
    if train_run and record.get("fingerprint") == model.info.get("fingerprint"):
        try:  # the training run carries its accuracies too, so leaderboards sort training runs
            log_metrics_to_run(train_run, metrics)
        except Exception as exc:  # the training run may live in another store
            log(f"could not add metrics to training run {train_run}: {exc.__class__.__name__}")
    return metrics


def _report(cfg: Config, results: list[VerificationResult]) -> dict[str, float]:
    """One scored model: metrics, histograms and ROC to MLflow, the table to stdout, DVC files to evaluate.out."""
    metrics = _log_results(results)
    log_metrics(metrics)
    table = results_table([("model", r) for r in results])
    log_text(table, "results.md")
    print(table, end="")
    _write_outputs(Path(cfg.evaluate.out), metrics, [("", r) for r in results])
    return metrics


def _run_released(cfg: Config, benches: dict[str, str], where: str, products: str | Path | None) -> dict:
    """``evaluate.model`` is a released insightface model: an arcface_torch ``.pth`` (+ arch) or an ONNX file."""
    from facefoundry.models.released import load_model

    spec = Path(cfg.evaluate.model)
    model = load_model(spec, cfg.evaluate.arch, resolve_device(cfg.base.device))  # every problem: one line
    fmt, arch = model.info["source_format"], model.info.get("arch")
    log(f"evaluating {spec} ({fmt}{', ' + arch if arch else ''}, {model.preprocess.image_size}-px input)")
    tags = {
        "facefoundry.model": str(spec),
        "facefoundry.model_format": fmt,
        **({"facefoundry.arch": arch} if arch else {}),
    }
    check_benchmark_files(benches, where)
    with stage_run(
        cfg, "evaluate", ["evaluate"], tags, name=run_name("evaluate", spec.name, *benches), products=products
    ):
        with torch.inference_mode():
            results = evaluate_model(model, benches, cfg, where)
        return _report(cfg, results)


def _run_encoders(
    cfg: Config, encoders: list[str], benches: dict[str, str], where: str, products: str | Path | None
) -> dict:
    """Pretrained encoders as judges: one metric set per encoder (prefixed when there are several)."""
    from facefoundry.identity import load_encoder

    several = len(encoders) > 1
    metrics: dict[str, float] = {}
    labelled: list[tuple[str, VerificationResult]] = []
    check_benchmark_files(benches, where)
    with stage_run(
        cfg,
        "evaluate",
        ["evaluate"],
        {"facefoundry.encoders": ",".join(encoders)},
        name=run_name("evaluate", "encoders " + ",".join(encoders), *benches),
        products=products,
    ):
        for spec in encoders:
            enc = load_encoder(spec)
            who = enc.name if enc.name != "onnx" else Path(spec).stem
            log_text(json.dumps(enc.spec(), indent=2), f"encoders/{who}.json")
            with torch.inference_mode():
                results = evaluate_embedder(encoder_embedder(enc, cfg), benches, cfg, None, who, where)
            metrics.update(_log_results(results, f"{who}/" if several else ""))
            labelled += [(who, r) for r in results]
        log_metrics(metrics)
        table = results_table(labelled)
        log_text(table, "results.md")
        print(table, end="")
        _write_outputs(Path(cfg.evaluate.out), metrics, [(who if several else "", r) for who, r in labelled])
    return metrics


def _thin(fpr: np.ndarray, tpr: np.ndarray, n: int = 200) -> list[tuple[float, float]]:
    """At most ``n`` ROC points (DVC plots stay small), always keeping the ends."""
    idx = np.unique(np.linspace(0, len(fpr) - 1, min(n, len(fpr))).astype(int))
    return list(zip(fpr[idx], tpr[idx]))
