"""``train-vec2face`` stage: train (or resume) the Vec2Face generator and log it to MLflow."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from facefoundry.config import Config
from facefoundry.generators.vec2face.training import CHECKPOINT
from facefoundry.io import atomic_write_json
from facefoundry.plots import curve_figure, image_grid
from facefoundry.stages.common import log
from facefoundry.tracking import (
    _mlflow,
    dvc_dir_hash,
    log_dataset_version,
    log_figure,
    log_image,
    log_metrics,
    read_run_record,
    run_name,
    stage_run,
    write_run_record,
)

_NOT_METRICS = {"epoch", "seconds", "images_per_second", "disc_on", "lr"}


def _run_key(cfg: Config, digest: str) -> str:
    """Same settings and data (its DVC hash): a killed run's MLflow run is reopened when training resumes."""
    keep = {k: val for k, val in cfg.vec2face.model_dump(mode="json").items()
            if k not in ("metrics", "threads", "num_workers", "log_every")}
    blob = json.dumps({"vec2face": keep, "seed": cfg.base.seed, "data": digest}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_train_vec2face(cfg: Config, stop_after: int | None = None, products: str | Path | None = None) -> dict:
    """Train (or resume) Vec2Face; loss curves and reconstructions go to ``products`` (and MLflow)."""
    from facefoundry.data.sources import open_source
    from facefoundry.generators.vec2face.training import (
        reconstruction_grid,
        train_vec2face,
    )

    v = cfg.vec2face
    source = open_source(v.dataset)
    log(f"vec2face: {source.describe()}; encoder {v.encoder}; {v.image_size}px, width {v.width}, depth {v.depth}")
    name = run_name("train-vec2face", source.root.name, f"w{v.width} d{v.depth}", f"{v.image_size}px",
                    f"{v.epochs} ep")
    out = Path(v.out)
    digest = dvc_dir_hash(source.root)  # once: the run key and the dataset input both name it
    key = _run_key(cfg, digest)
    record = read_run_record(out)
    reopen = record.get("run_id") if record.get("key") == key and (out / CHECKPOINT).is_file() else None
    with stage_run(cfg, "train-vec2face", ["vec2face"], {"facefoundry.dataset": str(source.root),
                                                          "facefoundry.generator": "vec2face"},
                   run_id=reopen, name=name, products=products) as run:
        write_run_record(out, {"run_id": run.info.run_id, "key": key})
        if run.info.run_id != reopen:
            log_dataset_version(source.root, digest=digest)
        result = train_vec2face(cfg, source, log=log, stop_after=stop_after)
        if result.resumed_from:
            _mlflow().set_tag("resumed_from_epoch", str(result.resumed_from))
        for h in result.history:
            log_metrics({f"vec2face/{k}": val for k, val in h.items() if k != "epoch"}, step=int(h["epoch"]))
        if result.history:
            keys = [k for k in result.history[0] if k not in ("epoch", "lr", "disc_on", "images_per_second", "seconds")]
            log_figure(curve_figure("vec2face losses", {k: [h.get(k, float("nan")) for h in result.history]
                                                       for k in keys}), "plots/vec2face_losses.png")
        rows = reconstruction_grid(result.model_dir, source, seed=cfg.base.seed)
        log_image(image_grid(rows), "samples/vec2face_reconstruction.png")
        # DVC metrics: reproducible numbers only (no run ids, digests or timings)
        final = {"epochs": len(result.history), **({k: val for k, val in result.history[-1].items()
                                                    if k not in _NOT_METRICS} if result.history else {})}
        atomic_write_json(v.metrics or f"{v.out}/metrics.json", final)
        log(f"vec2face model saved to {result.model_dir}")
        return final
