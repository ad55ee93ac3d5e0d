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
    if p <= 0:
        return x
    mask = torch.rand(x.shape[0], generator=generator) < p
    if mask.any():
        x = x.clone()
        x[mask] = x[mask].flip(-1)
    return x
