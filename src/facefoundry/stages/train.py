"""``train`` stage: fit, export (model folder + ONNX), log everything to MLflow.

DVC sees only reproducible files: the model folder and a metrics file of final numbers. The
MLflow run id and the registry version go to a side file (``tracking.RUN_FILE`` in
``train.out``, not a DVC output), which a resumed run reopens and ``evaluate`` reads.

Under DDP (``facefoundry train --nproc N``) every process trains, and rank 0 alone does the rest: the MLflow run,
the checkpoints, the metrics file, the model folder, the ONNX export and the registry version; the other ranks
run the training loop only. DVC, MLflow and a sweep see one stage and one run.

What training cost goes to MLflow only: ``cost/train_seconds``, wall-clock seconds of the fit (summed over the
invocations of a resumed run, logged also when ``stop_after`` stops it early), and the tag
``facefoundry.device``; the leaderboard adds its dataset's cost to it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from facefoundry.config import Config
from facefoundry.io import atomic_write_json, read_json
from facefoundry.leaderboard import REGIME_TAG, TRAIN_SECONDS
from facefoundry.models.bundle import INDEX, RawEmbedding
from facefoundry.plots import training_figure
from facefoundry.stages.common import dataset_grid, log
from facefoundry.tracking import (
    _mlflow,
    log_dataset_version,
    log_figure,
    log_image,
    log_metrics,
    log_torch_model,
    read_run_record,
    recipe_params,
    run_name,
    stage_run,
    write_run_record,
)
from facefoundry.train.distributed import from_rank_zero
from facefoundry.train.trainer import CHECKPOINT, EpochStats, Trainer


def run_record(model_dir: str | Path) -> dict:
    """What the training stage recorded about its MLflow run, for the model in ``model_dir``."""
    return read_run_record(Path(model_dir).parent)


def recipe_name(cfg: Config, dataset_root: str | Path) -> str:
    return cfg.train.recipe or Path(dataset_root).name


def _alias(name: str) -> str:
    """A registry alias from a recipe name (letters, digits, ``_`` and ``-``; not ``v<digits>``)."""
    a = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "recipe"
    return f"recipe-{a}" if re.fullmatch(r"[vV]\d+|latest", a) else a


def backbone_label(cfg: Config) -> str:
    b = cfg.train.backbone
    return f"{b.name}{list(b.layers) if b.layers else ''}w{b.width}"


def run_train(
    cfg: Config,
    stop_after: int | None = None,
    epoch_hook: Callable[[EpochStats, Trainer], None] | None = None,
    products: str | Path | None = None,
) -> dict:
    """Train, export and log one FR model.

    ``epoch_hook(stats, trainer)`` runs after each epoch's checkpoint, inside the training run (a sweep
    trial scores the current backbone there and reports it to Ray Tune); without it nothing changes.
    ``products`` (the CLI: ``<train.out>/plots``) receives the training curve and the sample grid.
    """
    t = cfg.train
    trainer = Trainer(cfg, log=log)
    out = Path(t.out)
    metrics_path = Path(t.metrics or out / "metrics.json")
    recipe = recipe_name(cfg, trainer.source.root)
    record = read_run_record(out)
    index = read_json(out / "model" / INDEX)
    done = index.get("fingerprint") == trainer.fingerprint and metrics_path.is_file()
    if from_rank_zero(done):  # rank 0 decides for every rank
        if trainer.rank == 0:
            log(f"{out / 'model'} is up to date for these settings and data: nothing to do (no new MLflow run)")
        return read_json(metrics_path) if trainer.rank == 0 else {}
    if trainer.rank != 0:  # DDP: the training loop only; rank 0 tracks, checkpoints and exports
        trainer.fit(stop_after=stop_after)
        return {}
    procs = f" × {trainer.world} processes" if trainer.world > 1 else ""
    log(
        f"{trainer.source.describe()} on {trainer.device}{procs}; "
        f"{'preloaded in RAM' if trainer.feeder.preloaded else 'streaming'}; "
        f"{sum(p.numel() for p in trainer.backbone.parameters()) / 1e6:.2f}M backbone parameters"
    )
    reopen = (
        record.get("run_id")
        if record.get("fingerprint") == trainer.fingerprint and (out / CHECKPOINT).is_file()
        else None
    )
    init = trainer.init_info  # train.init: the starting weights, recorded on the run and in the model folder
    label = f"{init['arch']} from {Path(init['path']).name}" if init else backbone_label(cfg)
    learns = t.head.name if t.objective == "labels" else trainer.regime  # what the student learned from
    name = run_name("train", recipe, label, learns, f"lr {t.lr:g}", f"{t.epochs} ep", f"seed {cfg.base.seed}")
    tags = {
        "facefoundry.dataset": str(trainer.source.root),
        "facefoundry.recipe": recipe,
        REGIME_TAG: trainer.regime,
        **({"facefoundry.init": init["path"], "facefoundry.init_md5": init["md5"]} if init else {}),
    }
    with stage_run(cfg, "train", ["train"], tags, run_id=reopen, name=name, products=products) as run:
        write_run_record(out, {"run_id": run.info.run_id, "fingerprint": trainer.fingerprint, "recipe": recipe})
        resumed = reopen is not None and run.info.run_id == reopen
        if not resumed:
            digest = log_dataset_version(trainer.source.root, digest=trainer.dataset_digest)
            meta = getattr(getattr(trainer.source, "manifest", None), "meta", None)
            if meta:
                _mlflow().log_params(recipe_params(meta))
            log_metrics(
                {
                    "data/images": len(trainer.source),
                    "data/identities": trainer.source.num_classes,
                    **{f"data/{k}": v for k, v in trainer.data_checks.items()},
                }
            )
        else:
            digest = trainer.dataset_digest
        log_image(dataset_grid(trainer.source, seed=cfg.base.seed), "samples/train_grid.png")

        def epoch_metrics(s: EpochStats) -> None:
            log_metrics(
                {
                    "train/loss": s.loss,
                    **({"train/accuracy": s.accuracy} if trainer.head is not None else {}),  # distill: no labels
                    **({"train/teacher_cosine": s.teacher_cosine} if s.teacher_cosine is not None else {}),
                    "train/lr": s.lr,
                    "train/images_per_second": s.images_per_second,
                },
                step=s.epoch,
            )

        def on_epoch(s: EpochStats) -> None:
            epoch_metrics(s)
            if epoch_hook is not None:
                epoch_hook(s, trainer)

        def on_resume(saved: list[EpochStats]) -> None:
            # a kill between the checkpoint and on_epoch leaves an epoch saved but not logged: log it now
            logged = {m.step for m in _mlflow().MlflowClient().get_metric_history(run.info.run_id, "train/loss")}
            for s in saved:
                if s.epoch not in logged:
                    epoch_metrics(s)

        before = _mlflow().MlflowClient().get_run(run.info.run_id).data.metrics.get(TRAIN_SECONDS, 0.0)
        _mlflow().set_tag("facefoundry.device", str(trainer.device))
        if trainer.world > 1:
            _mlflow().set_tag("facefoundry.processes", str(trainer.world))
        t0 = time.perf_counter()
        result = trainer.fit(on_epoch, stop_after=stop_after, on_resume=on_resume)
        log_metrics({TRAIN_SECONDS: float(before) + time.perf_counter() - t0})  # MLflow only: no timings in DVC
        if result.resumed_from:
            _mlflow().set_tag("resumed_from_epoch", str(result.resumed_from))
        hist = result.history
        if stop_after is not None and len(hist) < t.epochs:
            log(f"stopped after epoch {len(hist)} of {t.epochs}; run again to resume (run {run.info.run_id})")
            return {"epochs": len(hist)}
        if hist:
            log_figure(
                training_figure([h.loss for h in hist], [h.accuracy for h in hist], f"training · {recipe}"),
                "plots/training.png",
            )
        model = trainer.export({"recipe": recipe})
        onnx = out / "model" / "backbone.onnx"
        reg = log_torch_model(
            RawEmbedding(model.backbone),
            cfg.base.image_size,
            "model",
            registered_name=t.registered_model,
            onnx_path=onnx,
            alias=_alias(recipe),
            tags={
                "recipe": recipe,
                "dataset_dvc_md5": digest,
                "train_run_id": run.info.run_id,
                "backbone": label,
                "head": t.head.name,
                "regime": trainer.regime,
            },
        )
        write_run_record(out, {"run_id": run.info.run_id, "fingerprint": trainer.fingerprint, "recipe": recipe, **reg})
        # DVC metrics: reproducible numbers only (no run ids, digests or timings)
        final = {
            "epochs": len(hist),
            "loss": hist[-1].loss if hist else None,
            "train_accuracy": hist[-1].accuracy if hist and trainer.head is not None else None,
            **({"teacher_cosine": hist[-1].teacher_cosine} if hist and hist[-1].teacher_cosine is not None else {}),
        }
        atomic_write_json(metrics_path, final)
        where = f", registered as {reg['registered_name']} v{reg['version']}" if "version" in reg else ""
        log(f"model saved to {result.model_dir} (run {run.info.run_id}{where})")
        return final
