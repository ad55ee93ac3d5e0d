"""``train-idsync`` stage: train (or resume) IDSync and log it to MLflow."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from facefoundry.config import Config
from facefoundry.generators.idsync.training import CHECKPOINT
from facefoundry.io import atomic_write_json
from facefoundry.plots import curve_figure
from facefoundry.stages.common import log
from facefoundry.tracking import (
    _mlflow,
    dvc_dir_hash,
    log_dataset_version,
    log_figure,
    log_metrics,
    read_run_record,
    run_name,
    stage_run,
    write_run_record,
)

_NOT_METRICS = {"epoch", "seconds", "images_per_second", "lr"}


def _run_key(cfg: Config, digest: str) -> str:
    """Same settings and data: a killed run's MLflow run is reopened when training resumes."""
    keep = {k: v for k, v in cfg.idsync.model_dump(mode="json").items()
            if k not in ("metrics", "threads", "log_every", "preload_max_mb", "id_batch_size")}
    blob = json.dumps({"idsync": keep, "seed": cfg.base.seed, "data": digest}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_train_idsync(cfg: Config, stop_after: int | None = None) -> dict:
    from facefoundry.data.sources import open_source
    from facefoundry.generators.idsync.training import train_idsync

    c = cfg.idsync
    source = open_source(c.dataset)
    lam = f"λ {c.identity_weight:g} {c.identity_loss}" if c.identity_weight else "λ 0 (Arc2Face)"
    log(f"idsync: {source.describe()}; encoder {c.encoder}; {lam}; {c.image_size}px")
    name = run_name("train-idsync", source.root.name, lam, f"{c.image_size}px", f"{c.epochs} ep")
    out = Path(c.out)
    digest = dvc_dir_hash(source.root)  # once: the run key, the dataset input and the training caches name it
    key = _run_key(cfg, digest)
    record = read_run_record(out)
    reopen = record.get("run_id") if record.get("key") == key and (out / CHECKPOINT).is_file() else None
    with stage_run(cfg, "train-idsync", ["idsync"], {"facefoundry.dataset": str(source.root),
                                                      "facefoundry.generator": "idsync"},
                   run_id=reopen, name=name) as run:
        write_run_record(out, {"run_id": run.info.run_id, "key": key})
        if run.info.run_id != reopen:
            log_dataset_version(source.root, digest=digest)
        result = train_idsync(cfg, source, log=log, stop_after=stop_after, digest=digest)
        if result.resumed_from:
            _mlflow().set_tag("resumed_from_epoch", str(result.resumed_from))
        for h in result.history:
            log_metrics({f"idsync/{k}": v for k, v in h.items() if k != "epoch"}, step=int(h["epoch"]))
        if result.history:
            keys = [k for k in result.history[0] if k not in _NOT_METRICS]
            log_figure(curve_figure("idsync losses", {k: [h.get(k, float("nan")) for h in result.history]
                                                     for k in keys}), "plots/idsync_losses.png")
        final = {"epochs": len(result.history), **({k: v for k, v in result.history[-1].items()
                                                    if k not in _NOT_METRICS} if result.history else {})}
        atomic_write_json(c.metrics or f"{c.out}/metrics.json", final)
        log(f"idsync model saved to {result.model_dir}")
        return final
