"""A toy generator plug-in: each identity is a random 2 × 2 colour layout, each image that layout shifted and
noised. It uses only FaceFoundry's public pieces (the descriptor, the config, the write loop)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from facefoundry.config import Config
from facefoundry.generators.descriptor import GeneratorDescriptor
from facefoundry.generators.write import write_generated

DESCRIPTOR = GeneratorDescriptor(
    name="toy",
    description="toy colour-layout faces (a test plug-in)",
    generate="facefoundry_toygen:generate",
    settings="generate.toy",
)


def generate(cfg: Config, log: Callable[[str], None] = print) -> Path:
    g, size = cfg.generate, cfg.base.image_size
    settings = {"noise": 12.0, **g.plugin_settings("toy")}
    meta = {"generator": "toy", "num_classes": g.identities, "image_size": size, "toy": settings}
    labels = [label for label in range(g.identities) for _ in range(g.images_per_identity)]

    def batches(start: int):
        for s in range(start, len(labels), g.batch_size):
            rng = np.random.default_rng([cfg.base.seed, s])  # seeded by the offset: a resumed run repeats it
            images = []
            for label in labels[s : s + g.batch_size]:
                layout = np.random.default_rng([cfg.base.seed, label]).uniform(30, 225, (2, 2, 3))
                base = np.kron(layout, np.ones((size // 2, size // 2, 1)))
                img = np.roll(base, int(rng.integers(-2, 3)), axis=1) + rng.normal(0, settings["noise"], base.shape)
                images.append(np.clip(img, 0, 255).astype(np.uint8))
            yield images, [{"k": (s + k) % g.images_per_identity} for k in range(len(images))]

    written = write_generated(g, meta, labels, batches, name="toy", format_version=1, identity_digits=4, log=log)
    log(f"toy: {g.identities} identities × {g.images_per_identity} images → {written.out}")
    return written.out
