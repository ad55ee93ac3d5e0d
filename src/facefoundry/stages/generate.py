"""``generate`` and ``benchmark`` stages."""

from __future__ import annotations

import time

from facefoundry.config import Config
from facefoundry.data.sources import open_source
from facefoundry.generators.registry import GENERATORS, load_builtin
from facefoundry.generators.render.generate import generate_twin_benchmark
from facefoundry.plots import image_grid
from facefoundry.stages.common import dataset_grid, log
from facefoundry.tracking import log_dataset_version, log_image, log_metrics, stage_run
from facefoundry.verification.binfile import read_bin


def run_generate(cfg: Config) -> None:
    load_builtin()
    fn = GENERATORS.get(cfg.generate.generator)
    with stage_run(cfg, "generate", ["generate"], {"facefoundry.generator": cfg.generate.generator}):
        t0 = time.perf_counter()
        out = fn(cfg, log)
        secs = time.perf_counter() - t0
        src = open_source(out)
        log_metrics({"images": len(src), "identities": src.num_classes, "seconds": secs,
                     "images_per_second": len(src) / secs})
        log_image(dataset_grid(src, seed=cfg.base.seed), "samples/grid.png")
        log_dataset_version(out)
        log(f"wrote {len(src)} images of {src.num_classes} identities to {out} in {secs:.0f}s")


def run_benchmark(cfg: Config) -> None:
    with stage_run(cfg, "benchmark", ["generate", "benchmark"]):
        t0 = time.perf_counter()
        out = generate_twin_benchmark(cfg, log)
        pairs = read_bin(out)
        log_metrics({"pairs": len(pairs.issame), "positives": int(pairs.issame.sum()),
                     "seconds": time.perf_counter() - t0})
        rows = [[pairs.images[2 * i], pairs.images[2 * i + 1]] for i in range(min(12, len(pairs.issame)))]
        log_image(image_grid(rows), "samples/pairs.png")
        log(f"wrote {len(pairs.issame)} pairs to {out}")
