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


def resize_uint8(images, size: int):  # noqa: ANN001, ANN201 - numpy in, numpy out
    """Resize uint8 ``[N,H,W,3]`` crops to ``size``² (bilinear, anti-aliased when shrinking).

    Aligned crops keep their geometry under scaling (the alignment template scales with the
    side), so a 112-px benchmark can score a model trained at 56 px.
    """
    import numpy as np

    if images.shape[1:3] == (size, size):
        return images
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                        antialias=images.shape[1] > size)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
