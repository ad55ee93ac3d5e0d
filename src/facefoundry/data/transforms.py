"""The few image transforms FR needs, in torch (torchvision cannot be installed here).

Normalisation is saved with every model (``Preprocess``) so an embedding is always
computed on the colour order and scale the backbone was trained with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class Preprocess:
    """insightface convention: RGB, (x/255 - 0.5) / 0.5."""

    color_order: str = "RGB"
    mean: float = 0.5
    std: float = 0.5
    image_size: int = 112

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NxHxWx3 (RGB) -> float Nx3xHxW, normalised."""
        x = images
        if self.color_order == "BGR":
            x = x.flip(-1)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        return x.sub_(self.mean).div_(self.std)

    def to_dict(self) -> dict:
        return asdict(self)


def random_hflip(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each NCHW image left-right with probability ``p`` (a face stays the same identity)."""
    return random_hflip_mask(x, p, generator)[0]


def random_hflip_mask(
    x: torch.Tensor, p: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``random_hflip`` that also returns which images were flipped (bool ``[N]``)."""
    if p <= 0:
        return x, torch.zeros(x.shape[0], dtype=torch.bool)
    mask = torch.rand(x.shape[0], generator=generator) < p
    if mask.any():
        x = x.clone()
        x[mask] = x[mask].flip(-1)
    return x, mask


def resize_uint8(images, size: int):  # numpy in, numpy out
    """Resize uint8 ``[N,H,W,3]`` crops to ``size``² (bilinear, anti-aliased when shrinking).

    Aligned crops keep their geometry under scaling (the alignment template scales with the
    side), so a 112-px benchmark can score a model trained at 56 px.
    """
    import numpy as np

    if images.shape[1:3] == (size, size):
        return images
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=images.shape[1] > size
    )
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


class FaceAugment:
    """Photometric and small geometric augmentation of normalised NCHW batches (train only).

    Synthetic faces vary less than real ones, and an FR model trained on them latches onto
    whatever separates its classes; DigiFace-1M found heavy augmentation decisive for
    synthetic → real transfer. Each image independently: a random similarity (rotation,
    scale, shift; border replicated) with ``affine_prob``; brightness, contrast and saturation
    jitter with ``color_prob``; greyscale with ``grey_prob``; Gaussian blur with ``blur_prob``.
    Draws come from torch's global RNG, which the trainer re-seeds every epoch (resume-exact).
    Settings: ``config.AugmentCfg`` (``train.augment``), with keyword overrides.
    """

    def __init__(self, cfg=None, **overrides) -> None:  # AugmentCfg (imported lazily)
        from facefoundry.config import AugmentCfg

        self.cfg = (cfg or AugmentCfg()).model_copy(update=overrides)

    @property
    def active(self) -> bool:
        return max(self.cfg.affine_prob, self.cfg.color_prob, self.cfg.grey_prob, self.cfg.blur_prob) > 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return x
        import math

        import torch.nn.functional as F

        n = x.shape[0]
        x = x.clone()

        def pick(p: float) -> torch.Tensor:
            return torch.rand(n) < p

        sel = pick(self.cfg.affine_prob)
        if sel.any():
            k = int(sel.sum())
            ang = (torch.rand(k) * 2 - 1) * math.radians(self.cfg.rotate)
            sc = self.cfg.scale[0] + torch.rand(k) * (self.cfg.scale[1] - self.cfg.scale[0])
            sh = (torch.rand(k, 2) * 2 - 1) * self.cfg.translate * 2  # grid units span 2
            cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
            theta = torch.stack([torch.stack([cos, -sin, sh[:, 0]], 1), torch.stack([sin, cos, sh[:, 1]], 1)], 1)
            grid = F.affine_grid(theta.to(x), list(x[sel].shape), align_corners=False)
            x[sel] = F.grid_sample(x[sel], grid, mode="bilinear", padding_mode="border", align_corners=False)
        sel = pick(self.cfg.color_prob)
        if sel.any():
            k = int(sel.sum())
            v = x[sel]
            b = 1 + (torch.rand(k, 1, 1, 1) * 2 - 1) * self.cfg.brightness
            c = 1 + (torch.rand(k, 1, 1, 1) * 2 - 1) * self.cfg.contrast
            s = 1 + (torch.rand(k, 1, 1, 1) * 2 - 1) * self.cfg.saturation
            grey = v.mean(1, keepdim=True)
            v = grey + (v - grey) * s.to(v)  # saturation
            m = v.mean((1, 2, 3), keepdim=True)
            v = m + (v - m) * c.to(v)  # contrast
            v = (v + 1) * b.to(v) - 1  # brightness (images are in [-1, 1])
            x[sel] = v.clamp(-1, 1)
        sel = pick(self.cfg.grey_prob)
        if sel.any():
            x[sel] = x[sel].mean(1, keepdim=True).expand(-1, x.shape[1], -1, -1)
        sel = pick(self.cfg.blur_prob)
        if sel.any():
            sigma = self.cfg.blur_sigma[0] + float(torch.rand(1)) * (self.cfg.blur_sigma[1] - self.cfg.blur_sigma[0])
            r = max(1, math.ceil(2 * sigma))
            t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
            g = torch.exp(-(t**2) / (2 * sigma**2))
            g = (g / g.sum()).view(1, 1, 1, -1)
            v = x[sel]
            ch = v.shape[1]
            v = F.conv2d(F.pad(v, (r, r, 0, 0), mode="replicate"), g.expand(ch, 1, 1, -1), groups=ch)
            v = F.conv2d(F.pad(v, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1).expand(ch, 1, -1, 1), groups=ch)
            x[sel] = v
        return x
