"""``generate`` and ``benchmark`` stages.

Cost (MLflow only, never in the dataset: its bytes do not depend on how long it took): the generate run logs
``cost/generation_seconds``, the tag ``facefoundry.device`` (the resolved ``base.device``) and, for a learned
generator, ``cost/generator_training_seconds`` of the training run that made its model (found through the
model folder's run record; the tag ``facefoundry.generator_run`` names it; 0 for a generator that learns
nothing). The leaderboard adds both to a dataset's cost through the run's ``dataset.dvc_md5`` tag.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from facefoundry.config import Config
from facefoundry.data.sources import open_source
from facefoundry.data.writer import DatasetWriter
from facefoundry.generators.render.generate import generate_twin_benchmark
from facefoundry.generators.table import descriptor
from facefoundry.leaderboard import GENERATION_SECONDS, GENERATOR_TRAINING_SECONDS
from facefoundry.plots import labelled_grid
from facefoundry.stages.common import dataset_grid, log
from facefoundry.tracking import (
    _mlflow,
    log_dataset_version,
    log_figure,
    log_image,
    log_metrics,
    read_run_record,
    run_name,
    set_tag,
    stage_run,
)
from facefoundry.verification.binfile import read_bin


def device_of(cfg: Config) -> str:
    """The device ``base.device`` resolves to here (``cpu``, ``cuda``, ``cuda:1``); the setting itself when it
    resolves to none."""
    from facefoundry.device import resolve_device
    from facefoundry.errors import FaceFoundryError

    try:
        return str(resolve_device(cfg.base.device))
    except FaceFoundryError:
        return cfg.base.device


def generator_training_cost(cfg: Config, name: str) -> tuple[float | None, str | None]:
    """Seconds the generator's model took to train, and the training run's id: (0, None) for a generator that
    learns nothing; (None, id or None) when its model folder names no run, or the run has no cost logged."""
    from facefoundry.stages.generator import model_folder

    desc = descriptor(name)
    if not (desc.learned and desc.model_setting):
        return 0.0, None
    run_id = read_run_record(model_folder(cfg, desc).parent).get("run_id")
    if not run_id:
        return None, None
    try:
        value = _mlflow().MlflowClient().get_run(run_id).data.metrics.get(GENERATOR_TRAINING_SECONDS)
    except Exception:  # deleted, or in another store
        return None, run_id
    return (None if value is None else float(value)), run_id


def run_generate(cfg: Config, products: str | Path | None = None) -> None:
    """Write the dataset with the generator the table names; its sample grids go to ``products`` (and MLflow)."""
    fn = descriptor(cfg.generate.generator).entry("generate")
    g = cfg.generate
    name = run_name("generate", g.generator, g.shape)
    with stage_run(cfg, "generate", ["generate"], {"facefoundry.generator": g.generator}, name=name, products=products):
        DatasetWriter.last = {}
        t0 = time.perf_counter()
        out = fn(cfg, log)
        secs = time.perf_counter() - t0
        src = open_source(out)
        done = DatasetWriter.last.get("written", len(src))  # a resumed run counts only its own images
        log_metrics(
            {
                "images": len(src),
                "identities": src.num_classes,
                "seconds": secs,
                "images_written": done,
                "images_resumed": DatasetWriter.last.get("resumed", 0),
                "images_per_second": done / max(secs, 1e-9),
            }
        )
        trained, generator_run = generator_training_cost(cfg, g.generator)
        cost = {GENERATION_SECONDS: secs, **({GENERATOR_TRAINING_SECONDS: trained} if trained is not None else {})}
        log_metrics(cost)
        set_tag("facefoundry.device", device_of(cfg))
        if generator_run:
            set_tag("facefoundry.generator_run", generator_run)
        log_image(dataset_grid(src, seed=cfg.base.seed), "samples/grid.png")
        log_dataset_version(out, context="generated")
        log(f"wrote {done} images ({len(src)} in all, {src.num_classes} identities) to {out} in {secs:.0f}s")


def run_benchmark(cfg: Config, products: str | Path | None = None) -> None:
    """Write the twin benchmark; a grid of its pairs goes to ``products`` (and MLflow)."""
    with stage_run(cfg, "benchmark", ["generate", "benchmark"], name=run_name("benchmark", "twins"), products=products):
        t0 = time.perf_counter()
        out = generate_twin_benchmark(cfg, log)
        pairs = read_bin(out)
        log_metrics(
            {"pairs": len(pairs.issame), "positives": int(pairs.issame.sum()), "seconds": time.perf_counter() - t0}
        )
        # one row per pair type: genuine (same identity) and impostor (different, twins included)
        n = 6
        gen = np.flatnonzero(pairs.issame)[:n]
        imp = np.flatnonzero(~pairs.issame)[:n]
        rows = [
            [pairs.images[2 * i] for i in gen],
            [pairs.images[2 * i + 1] for i in gen],
            [pairs.images[2 * i] for i in imp],
            [pairs.images[2 * i + 1] for i in imp],
        ]
        log_figure(
            labelled_grid(
                rows,
                ["genuine: A", "genuine: B", "impostor: A", "impostor: B"],
                "benchmark pairs (each column is one pair)",
            ),
            "samples/pairs.png",
        )
        log(f"wrote {len(pairs.issame)} pairs to {out}")
