"""A toy generator plug-in: each identity is a random 2 × 2 colour layout, each image that layout shifted and
noised. It uses only FaceFoundry's public pieces (the descriptor, the config, the dataset writer)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from facefoundry.config import Config
from facefoundry.data.writer import DatasetWriter
from facefoundry.generators.descriptor import GeneratorDescriptor

DESCRIPTOR = GeneratorDescriptor(
    name="toy",
    description="toy colour-layout faces (a test plug-in)",
    generate="facefoundry_toygen:generate",
    settings="generate.toy",
)


def generate(cfg: Config, log: Callable[[str], None] = print) -> Path:
    g, size = cfg.generate, cfg.base.image_size
    settings = {"noise": 12.0, **g.plugin_settings("toy")}
    rng = np.random.default_rng(cfg.base.seed)
    meta = {"generator": "toy", "num_classes": g.identities, "image_size": size, "toy": settings}
    with DatasetWriter(g.out, meta, g.image_format) as w:
        for label in range(g.identities):
            layout = np.random.default_rng([cfg.base.seed, label]).uniform(30, 225, (2, 2, 3))
            base = np.kron(layout, np.ones((size // 2, size // 2, 1)))
            for k in range(g.images_per_identity):
                img = np.roll(base, int(rng.integers(-2, 3)), axis=1) + rng.normal(0, settings["noise"], base.shape)
                w.add(np.clip(img, 0, 255).astype(np.uint8), label, f"toy_{label:04d}", "toy", {"k": k})
    log(f"toy: {g.identities} identities × {g.images_per_identity} images → {g.out}")
    return Path(g.out)
