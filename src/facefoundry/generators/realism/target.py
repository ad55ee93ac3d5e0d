"""A stand-in target domain for the embedded default, which has no real photos.

Faces from the same renderer but a deliberately different appearance model —
photographic lighting (soft key light, high ambient, warm balance), film-like tone
curve, lower saturation, vignetting, sensor grain — so an unpaired translator has a
real domain gap to learn. Real users point ``realism.target_dir`` at photos instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from facefoundry.config import Config, RenderCfg, deep_merge
from facefoundry.data.images import encode_image
from facefoundry.device import resolve_device
from facefoundry.generators.render.generate import render_batches, sample_identities
from facefoundry.generators.render.renderer import FaceRenderer
from facefoundry.io import atomic_dir

PHOTO_LOOK = {
    "ambient": [0.45, 0.6],
    "light_elevation": [20, 45],
    "light_azimuth": [-30, 30],
    "color_temperature": [3200, 4500],
    "light_intensity": [0.5, 0.7],
    "blur_sigma": [0.4, 0.9],
    "noise_std": [0.0, 0.005],
    "jpeg_prob": 0.0,
    "glasses_prob": 0.05,
    "hat_prob": 0.0,
}


def photographic_look(img: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Tone curve, desaturation, vignette and grain on float NHWC in [0, 1]."""
    n, h, w, _ = img.shape
    x = img.clamp(0, 1)
    x = x * x * (3 - 2 * x)  # S-shaped tone curve
    grey = x.mean(-1, keepdim=True)
    x = grey + 0.7 * (x - grey)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    x = x * (1 - 0.35 * (xx**2 + yy**2)[None, ..., None] / 2)
    grain = torch.from_numpy(rng.normal(0, 0.025, (n, h, w, 1))).float()
    return (x + grain).clamp(0, 1)


def make_photographic_target(cfg: Config, out: str | Path, log: Callable[[str], None] = print) -> Path:
    r = cfg.realism
    render_cfg = RenderCfg.model_validate(deep_merge(cfg.generate.render.model_dump(), PHOTO_LOOK))
    renderer = FaceRenderer(render_cfg, cfg.base.image_size, resolve_device(cfg.base.device))
    idents = sample_identities(r.target_images, 0.0, cfg.base.seed + 7_000_001)
    rng = np.random.default_rng([cfg.base.seed, 7])
    variations = renderer.sample_variations(len(idents), rng)
    with atomic_dir(out) as tmp:
        for s, imgs, _ in render_batches(
            renderer, idents, variations, cfg.generate.batch_size, log, "photographic target"
        ):
            looked = photographic_look(torch.from_numpy(imgs).float() / 255, rng)
            for k, im in enumerate((looked * 255 + 0.5).to(torch.uint8).numpy()):
                (tmp / f"{s + k:06d}.jpg").write_bytes(encode_image(im, "jpg", 90))
    return Path(out)
