"""``generate`` and ``benchmark`` stages."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from facefoundry.config import Config
from facefoundry.data.sources import open_source
from facefoundry.data.writer import DatasetWriter
from facefoundry.generators.render.generate import generate_twin_benchmark
from facefoundry.generators.table import descriptor
from facefoundry.plots import labelled_grid
from facefoundry.stages.common import dataset_grid, log
from facefoundry.tracking import log_dataset_version, log_figure, log_image, log_metrics, run_name, stage_run
from facefoundry.verification.binfile import read_bin


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
