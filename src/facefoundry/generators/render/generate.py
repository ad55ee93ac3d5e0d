"""The ``render`` generator: N separated identities × M rendered variations, and the twin benchmark."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from facefoundry.config import Config, Range, RenderCfg, deep_merge
from facefoundry.device import resolve_device
from facefoundry.errors import FaceFoundryError
from facefoundry.generators.render.head import IDENTITY
from facefoundry.generators.render.renderer import FaceRenderer, Identity
from facefoundry.generators.sampling import perturb, sample_separated
from facefoundry.generators.write import write_generated
from facefoundry.progress import track
from facefoundry.sampling.mixup import draw_partners, mix_vectors, ratio_grid
from facefoundry.verification.binfile import write_bin

FORMAT_VERSION = 1  # bump when rendering changes, so an old partial run is not resumed


def sample_identities(n: int, min_distance: float, seed: int, existing: np.ndarray | None = None) -> list[Identity]:
    rng = np.random.default_rng(seed)
    vecs = sample_separated(n, len(IDENTITY), min_distance, rng, existing)
    return [Identity(v, int(rng.integers(2**31))) for v in vecs]


# SynFace's attribute-controlled datasets: the factors each `generate.vary` lets change per image
FACTORS = {
    "pose": ("yaw", "pitch", "roll"),
    "expression": ("smile", "mouth_open", "brows", "eye_closure"),
    "illumination": ("light_azimuth", "light_elevation", "light_intensity", "ambient", "color_temperature"),
}


def controlled(variations: list[dict], cfg: RenderCfg, vary: str) -> list[dict]:
    """Keep only the ``vary`` factor's per-image draws; every other factor takes one value for the whole
    dataset (ranges at their midpoint, no glasses, hat or JPEG, the first image's background and noise)."""
    if vary == "all" or not variations:
        return variations
    keep = set(FACTORS.get(vary, ()))
    ref = variations[0]
    out = []
    for v in variations:
        w = dict(v)
        for name in v:
            if name in keep:
                continue
            r = getattr(cfg, name, None)
            if isinstance(r, Range):
                w[name] = (r.min + r.max) / 2
            elif name in ("glasses", "hat", "jpeg"):
                w[name] = False
            else:
                w[name] = ref[name]
        out.append(w)
    return out


def render_batches(
    renderer: FaceRenderer,
    idents: list[Identity],
    variations: list[dict],
    batch: int,
    log: Callable[[str], None],
    what: str,
    start: int = 0,
):
    """Yield ``(offset, images, landmarks)`` per batch, showing progress and ETA under ``what``."""
    if start:
        log(f"{what}: resuming after {start} finished images")
    with track(total=len(idents), initial=start, desc=what, unit="img") as bar:
        for s in range(start, len(idents), batch):
            imgs, lms = renderer.render(idents[s : s + batch], variations[s : s + batch])
            bar.update(len(imgs))
            yield s, imgs, lms


def generate_render(cfg: Config, log: Callable[[str], None] = print) -> Path:
    g = cfg.generate
    renderer = FaceRenderer(g.render, cfg.base.image_size, resolve_device(cfg.base.device))
    idents = sample_identities(g.identities, g.min_identity_distance, cfg.base.seed)
    rng = np.random.default_rng([cfg.base.seed, 1])
    jobs = [label for label, n in enumerate(g.image_counts()) for _ in range(n)]
    variations = controlled(renderer.sample_variations(len(jobs), rng), g.render, g.vary)
    meta = {
        "generator": "render",
        "num_classes": g.identities,
        "image_size": cfg.base.image_size,
        "seed": cfg.base.seed,
        "render": g.render.model_dump(mode="json"),
        "triangles": renderer.num_triangles,
    }
    if g.vary != "all":
        meta["vary"] = g.vary
    people = [idents[j] for j in jobs]
    mix = None
    if g.mixup.enabled:  # SynFace identity mixup of the identity parameters (own stream: φ = 1 changes nothing)
        mix = draw_partners(
            np.asarray(jobs), g.identities, ratio_grid(g.mixup.phi), np.random.default_rng([cfg.base.seed, 51])
        )
        own = np.stack([p.vector for p in people])
        mixed = mix_vectors(own, np.stack([idents[max(p, 0)].vector for p in mix.partner]), mix, renormalise=False)
        people = [Identity(mixed[j], p.texture_seed) for j, p in enumerate(people)]
        meta["mixup"] = {"phi": ratio_grid(g.mixup.phi).tolist(), "mixed_images": int(mix.mixed.sum())}

    def batches(start: int):
        for s in range(start, len(people), g.batch_size):
            imgs, lms = renderer.render(people[s : s + g.batch_size], variations[s : s + g.batch_size])
            yield (
                imgs,
                [
                    {
                        **idents[jobs[s + k]].as_params(),
                        "variation": variations[s + k],
                        "landmarks": np.round(lm, 3).tolist(),
                    }
                    for k, lm in enumerate(lms)
                ],
            )

    written = write_generated(
        g, meta, jobs, batches, name="render", format_version=FORMAT_VERSION, mix=mix, identity_digits=5, log=log
    )
    return written.out


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
    n_twin = round(b.twin_fraction * n_neg)
    twins: np.ndarray | list[np.ndarray] = (
        perturb(np.stack([a.vector for a in anchors[:n_twin]]), b.twin_distance, rng) if n_twin else []
    )
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
        images[s : s + len(imgs)] = imgs
    write_bin(b.out, images, [same for _, _, same in pairs])
    return Path(b.out)
