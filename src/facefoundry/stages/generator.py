"""``train-generator NAME`` (and its aliases ``train-vec2face``, ``train-idsync``): the one training stage of
every learned generator.

The generator's descriptor names its training function, its config section (whose ``dataset`` it learns
from and whose ``out`` holds ``model/``) and, optionally, the parts of its run name and a sample grid to
look at. The stage around it is the same for all: the dataset hashed once (its DVC hash names the run's
data and the training caches), an MLflow run reopened when a killed training resumes with the same
settings and data, per-epoch metrics, the loss curves and samples in ``products`` and MLflow, and a DVC
metrics file of final numbers (no run ids or timings). What training cost goes to MLflow only:
``cost/generator_training_seconds``, wall-clock seconds of the training function, summed over the
invocations of a resumed run; ``generate`` copies it onto the datasets made with the model.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from facefoundry.config import Config, result_settings
from facefoundry.data.hashing import dvc_dir_hash
from facefoundry.generators.descriptor import GeneratorDescriptor, load_object
from facefoundry.generators.table import descriptor
from facefoundry.io import atomic_write_json, ensure_writable
from facefoundry.leaderboard import GENERATOR_TRAINING_SECONDS
from facefoundry.plots import curve_figure, image_grid
from facefoundry.stages.common import log
from facefoundry.tracking import (
    _mlflow,
    log_dataset_version,
    log_figure,
    log_image,
    log_metrics,
    read_run_record,
    run_name,
    stage_run,
    write_run_record,
)

CHECKPOINT = "checkpoint.pt"  # every learned generator's resumable state in its `out` folder
NOT_METRICS = {"epoch", "seconds", "images_per_second", "disc_on", "lr"}  # per-epoch bookkeeping, not final numbers


def training_section(cfg: Config, generator: str | GeneratorDescriptor) -> Any:
    """The config section of a learned generator's training settings (one line when it learns nothing)."""
    desc = descriptor(generator) if isinstance(generator, str) else generator
    if desc.train_section is None:
        from facefoundry.errors import FaceFoundryError

        raise FaceFoundryError(f"generator {desc.name!r} learns nothing: it has no training stage")
    return getattr(cfg, desc.train_section)


def model_folder(cfg: Config, generator: str | GeneratorDescriptor) -> Path:
    """The model folder a learned generator generates from (its descriptor's ``model_setting``)."""
    desc = descriptor(generator) if isinstance(generator, str) else generator
    node: Any = cfg
    for part in (desc.model_setting or "").split("."):
        node = getattr(node, part)
    return Path(node)


def missing_model(cfg: Config, name: str) -> bool:
    """Whether ``generate`` must train generator ``name`` first: its descriptor asks for that, its model setting
    is the default folder of its own training section, and that folder holds no model index."""
    desc = descriptor(name)
    if not (desc.train_when_missing and desc.model_setting and desc.model_index):
        return False
    model = model_folder(cfg, desc)
    return model == Path(training_section(cfg, desc).out) / "model" and not (model / desc.model_index).is_file()


def train_if_missing(cfg: Config, name: str) -> bool:
    """Before ``generate``: train generator ``name`` when :func:`missing_model` says so (as ``facefoundry
    train-generator NAME`` would, plots in its ``out/plots``); whether it trained."""
    if not missing_model(cfg, name):
        return False
    out = Path(training_section(cfg, name).out)
    log(f"{out / 'model'}: no {name} model yet; training it first (as `facefoundry train-generator {name}`)")
    ensure_writable(out)
    run_train_generator(cfg, name, products=out / "plots")
    return True


def run_key(cfg: Config, desc: GeneratorDescriptor, digest: str) -> str:
    """Same settings (those that change what is learned) and data: a killed run's MLflow run is reopened when
    training resumes."""
    keep = result_settings(training_section(cfg, desc))
    blob = json.dumps({desc.train_section: keep, "seed": cfg.base.seed, "data": digest}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_train_generator(
    cfg: Config, name: str, stop_after: int | None = None, products: str | Path | None = None
) -> dict:
    """Train (or resume) generator ``name`` on its section's ``dataset`` and log it; returns the final numbers."""
    from facefoundry.data.sources import open_source

    desc = descriptor(name)
    section = training_section(cfg, desc)
    assert desc.train_section is not None  # training_section raised otherwise
    train = desc.entry("train")
    source = open_source(section.dataset)
    parts = list(load_object(desc.describe)(cfg)) if desc.describe else []
    log(f"{name}: {source.describe()}; encoder {getattr(section, 'encoder', '-')}; {', '.join(parts)}")
    size, epochs = getattr(section, "image_size", None), getattr(section, "epochs", None)
    label = run_name(
        f"train-{name}", source.root.name, *parts, f"{size}px" if size else None, f"{epochs} ep" if epochs else None
    )
    out = Path(section.out)
    digest = dvc_dir_hash(source.root)  # once: the run key, the dataset input and the training caches name it
    key = run_key(cfg, desc, digest)
    record = read_run_record(out)
    reopen = record.get("run_id") if record.get("key") == key and (out / CHECKPOINT).is_file() else None
    with stage_run(
        cfg,
        f"train-{name}",
        [desc.train_section],
        {"facefoundry.dataset": str(source.root), "facefoundry.generator": name},
        run_id=reopen,
        name=label,
        products=products,
    ) as run:
        write_run_record(out, {"run_id": run.info.run_id, "key": key})
        if run.info.run_id != reopen:
            log_dataset_version(source.root, digest=digest)
        before = _mlflow().MlflowClient().get_run(run.info.run_id).data.metrics.get(GENERATOR_TRAINING_SECONDS, 0.0)
        t0 = time.perf_counter()
        result = train(cfg, source, log=log, stop_after=stop_after, digest=digest)
        # cumulative over a resumed run's invocations; MLflow only (the DVC metrics file has no timings)
        log_metrics({GENERATOR_TRAINING_SECONDS: float(before) + time.perf_counter() - t0})
        if result.resumed_from:
            _mlflow().set_tag("resumed_from_epoch", str(result.resumed_from))
        for h in result.history:
            log_metrics({f"{name}/{k}": v for k, v in h.items() if k != "epoch"}, step=int(h["epoch"]))
        if result.history:
            keys = [k for k in result.history[0] if k not in NOT_METRICS]
            log_figure(
                curve_figure(f"{name} losses", {k: [h.get(k, float("nan")) for h in result.history] for k in keys}),
                f"plots/{name}_losses.png",
            )
        if desc.reconstructions and Path(result.model_dir).is_dir():
            rows = load_object(desc.reconstructions)(result.model_dir, source, seed=cfg.base.seed)
            log_image(image_grid(rows), f"samples/{name}_reconstruction.png")
        # DVC metrics: reproducible numbers only (no run ids, digests or timings)
        final = {
            "epochs": len(result.history),
            **({k: v for k, v in result.history[-1].items() if k not in NOT_METRICS} if result.history else {}),
        }
        atomic_write_json(getattr(section, "metrics", None) or f"{section.out}/metrics.json", final)
        log(f"{name} model saved to {result.model_dir}")
        return final
