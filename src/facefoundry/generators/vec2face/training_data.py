"""What the Vec2Face training loop feeds on besides the photos and their identity vectors: the target
augmentation (``random_erasing``, one random rectangle per image) and every training crop's 68 landmarks
(``geometry_landmarks``, cached beside the identity vectors), from which the geometry codes are fitted.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from facefoundry.generators.feed import cache_key
from facefoundry.io import atomic_write_bytes
from facefoundry.progress import track
from facefoundry.train.feed import Feeder

# -- augmentation --------------------------------------------------------------------------------


def random_erasing(
    x: torch.Tensor,
    p: float,
    generator: torch.Generator | None = None,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    value: float = 0.0,
) -> torch.Tensor:
    """Erase one random rectangle (area ``scale`` of the image, aspect ``ratio``, log-uniform) per
    NCHW image with probability ``p``, filled with ``value`` (0 = mid-grey in ``[-1,1]``)."""
    if p <= 0:
        return x
    b, _, h, w = x.shape
    u = torch.rand(b, 5, generator=generator)
    area = h * w * (scale[0] + u[:, 0] * (scale[1] - scale[0]))
    logr = math.log(ratio[0]) + u[:, 1] * (math.log(ratio[1]) - math.log(ratio[0]))
    eh = (area * logr.exp()).sqrt().round().clamp(1, h).long()
    ew = (area / logr.exp()).sqrt().round().clamp(1, w).long()
    top = (u[:, 2] * (h - eh + 1)).long()
    left = (u[:, 3] * (w - ew + 1)).long()
    on = u[:, 4] < p
    ys, xs = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    box = (
        (ys >= top.view(-1, 1, 1))
        & (ys < (top + eh).view(-1, 1, 1))
        & (xs >= left.view(-1, 1, 1))
        & (xs < (left + ew).view(-1, 1, 1))
        & on.view(-1, 1, 1)
    )
    return torch.where(box.unsqueeze(1).to(x.device), torch.full_like(x, value), x)


def geometry_landmarks(
    feed: Feeder,
    cache_dir: Path,
    dataset_digest: str,
    batch_size: int = 256,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> np.ndarray:
    """Every training image's 68 landmarks ``[N, 68, 2]`` on its crop, cached like the identity vectors."""
    from facefoundry.identity.attributes import LandmarkEstimator

    path = Path(cache_dir) / f"landmarks_{cache_key({'data': dataset_digest, 'size': feed.size, 'n': len(feed)})}.npy"
    if path.is_file():
        try:
            lm = np.load(path)
            if lm.shape == (len(feed), 68, 2):
                log(f"landmarks: cached {path}")
                return lm
        except (OSError, ValueError):
            pass
    est = LandmarkEstimator()
    out = np.zeros((len(feed), 68, 2), np.float32)
    for imgs, idx in track(
        feed.ordered(batch_size),
        total=math.ceil(len(feed) / batch_size),
        desc="landmarks",
        unit="batch",
        disable=not progress,
    ):
        out[idx.numpy()] = est(imgs.numpy())  # uint8 [B,S,S,3]
    buf = io.BytesIO()
    np.save(buf, out)
    atomic_write_bytes(path, buf.getvalue())
    log(f"landmarks: {len(feed)} faces → {path}")
    return out
