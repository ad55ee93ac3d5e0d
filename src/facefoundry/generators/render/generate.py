"""The ``render`` generator: N separated identities × M rendered variations, and the twin benchmark."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np

from facefoundry.config import Config, RenderCfg, deep_merge
from facefoundry.data.writer import DatasetWriter
from facefoundry.device import resolve_device
from facefoundry.errors import FaceFoundryError
from facefoundry.generators.registry import GENERATORS
from facefoundry.generators.render.head import IDENTITY
from facefoundry.generators.render.renderer import FaceRenderer, Identity
from facefoundry.generators.sampling import perturb, sample_separated
from facefoundry.progress import track
from facefoundry.verification.binfile import write_bin

FORMAT_VERSION = 1  # bump when rendering changes, so an old partial run is not resumed


def sample_identities(n: int, min_distance: float, seed: int, existing: np.ndarray | None = None) -> list[Identity]:
    rng = np.random.default_rng(seed)
    vecs = sample_separated(n, len(IDENTITY), min_distance, rng, existing)
    return [Identity(v, int(rng.integers(2**31))) for v in vecs]


def render_batches(renderer: FaceRenderer, idents: list[Identity], variations: list[dict], batch: int,
                   log: Callable[[str], None], what: str, start: int = 0):
    """Yield ``(offset, images, landmarks)`` per batch, showing progress and ETA under ``what``."""
    if start:
        log(f"{what}: resuming after {start} finished images")
    with track(total=len(idents), initial=start, desc=what, unit="img") as bar:
        for s in range(start, len(idents), batch):
            imgs, lms = renderer.render(idents[s:s + batch], variations[s:s + batch])
            bar.update(len(imgs))
            yield s, imgs, lms


@GENERATORS.register("render")
def generate_render(cfg: Config, log: Callable[[str], None] = print) -> Path:
    g = cfg.generate
    renderer = FaceRenderer(g.render, cfg.base.image_size, resolve_device(cfg.base.device))
    idents = sample_identities(g.identities, g.min_identity_distance, cfg.base.seed)
    rng = np.random.default_rng([cfg.base.seed, 1])
    jobs = [label for label in range(g.identities) for _ in range(g.images_per_identity)]
    variations = renderer.sample_variations(len(jobs), rng)
    meta = {"generator": "render", "num_classes": g.identities, "image_size": cfg.base.image_size,
            "seed": cfg.base.seed, "render": g.render.model_dump(mode="json"), "triangles": renderer.num_triangles}
    key = hashlib.sha256(json.dumps([meta, g.model_dump(mode="json"), FORMAT_VERSION], sort_keys=True).encode())
    with DatasetWriter(g.out, meta, g.image_format, resume_key=key.hexdigest()) as w:
        start = w.done - w.done % g.batch_size  # restart at a batch boundary: same batches, same pixels
        w.truncate(start)
        for s, imgs, lms in render_batches(renderer, [idents[j] for j in jobs], variations, g.batch_size, log,
                                            "render", start):
            for k, (img, lm) in enumerate(zip(imgs, lms)):
                label = jobs[s + k]
                params = {**idents[label].as_params(), "variation": variations[s + k],
                          "landmarks": np.round(lm, 3).tolist()}
                w.add(img, label, f"render_{label:05d}", "render", params)
    return Path(g.out)


def benchmark_render_cfg(cfg: Config) -> RenderCfg:
    try:
        return RenderCfg.model_validate(deep_merge(cfg.generate.render.model_dump(), cfg.benchmark.render))
    except ValueError as exc:
        raise FaceFoundryError(f"benchmark.render: {exc}".splitlines()[0]) from None


def generate_twin_benchmark(cfg: Config, log: Callable[[str], None] = print) -> Path:
    """Pairs of rendered faces in insightface ``.bin`` form, identities disjoint from training.

    Half the pairs are the same identity under two variations; of the different-identity
    pairs, ``twin_fraction`` pair an identity with its twin (parameters perturbed by
    ``twin_distance``), the rest with another benchmark identity.
    """
    b, g = cfg.benchmark, cfg.generate
    renderer = FaceRenderer(benchmark_render_cfg(cfg), cfg.base.image_size, resolve_device(cfg.base.device))
    train = np.stack([i.vector for i in sample_identities(g.identities, g.min_identity_distance, cfg.base.seed)])
    n_pos = b.pairs // 2
    n_neg = b.pairs - n_pos
    anchors = sample_identities(max(n_pos, n_neg), g.min_identity_distance, cfg.base.seed + b.seed_offset, train)
    rng = np.random.default_rng([cfg.base.seed + b.seed_offset, 2])
    n_twin = int(round(b.twin_fraction * n_neg))
    twins = perturb(np.stack([a.vector for a in anchors[:n_twin]]), b.twin_distance, rng) if n_twin else []
    pairs: list[tuple[Identity, Identity, bool]] = [(anchors[i], anchors[i], True) for i in range(n_pos)]
    pairs += [(anchors[i], Identity(twins[i], int(rng.integers(2**31))), False) for i in range(n_twin)]
    for i in range(n_twin, n_neg):
        j = (i + 1 + int(rng.integers(len(anchors) - 1))) % len(anchors)
        pairs.append((anchors[i], anchors[j], False))
    pairs = [pairs[k] for k in rng.permutation(len(pairs))]
    flat = [ident for a, c, _ in pairs for ident in (a, c)]
    variations = renderer.sample_variations(len(flat), rng)
    images = np.empty((len(flat), cfg.base.image_size, cfg.base.image_size, 3), np.uint8)
    for s, imgs, _ in render_batches(renderer, flat, variations, g.batch_size, log, "twin benchmark"):
        images[s:s + len(imgs)] = imgs
    write_bin(b.out, images, [same for _, _, same in pairs])
    return Path(b.out)
