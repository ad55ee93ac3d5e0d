"""The one interface every identity encoder shares.

An encoder takes **template-aligned** face crops — the platform's own geometry: the insightface
5-point template scaled to the crop side — as float RGB in ``[0, 1]``, ``[B, 3, S, S]`` for any
``S``, and returns ℓ2-normalised identity vectors ``[B, dim]``. Whatever the network behind it
expects (its own crop geometry, input size, colour order, normalisation) happens inside the
encoder, in torch where the back-end allows, so an identity loss back-propagates to the pixels.

``EncoderInput`` records what the network itself expects; it is saved beside the encoder's
weights (``spec()``) so a vector is always computed the way the network was trained.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from facefoundry.progress import track


@dataclass(frozen=True)
class EncoderInput:
    """What the network behind an encoder expects (after the encoder's own warp)."""

    color_order: str  # "RGB" | "BGR"
    size: int  # square input side, pixels
    mean: tuple[float, float, float]  # subtracted from 0..255 pixel values, per channel
    std: tuple[float, float, float]  # then divided by
    geometry: str  # crop geometry the network was trained on: "arcface_template" | "dlib_chip"
    same_threshold: float | None = None  # the back-end's published same-person threshold (its own metric)

    def to_dict(self) -> dict:
        return asdict(self)


class IdentityEncoder(nn.Module):
    """Template-aligned RGB ``[0,1]`` crops in, unit identity vectors out."""

    name: str = "encoder"
    dim: int
    differentiable: bool = True
    input: EncoderInput

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def spec(self) -> dict:
        """Everything needed to reproduce a vector: back-end, dimension, input convention."""
        return {
            "name": self.name,
            "dim": self.dim,
            "differentiable": self.differentiable,
            "input": self.input.to_dict(),
            "expects": "template-aligned RGB in [0,1], any square size",
        }

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @torch.no_grad()
    def embed(
        self, images: np.ndarray | torch.Tensor, batch_size: int = 64, flip: bool = False, desc: str = ""
    ) -> np.ndarray:
        """Unit vectors of uint8 ``[N,H,W,3]`` RGB arrays (or float ``[N,3,H,W]`` in ``[0,1]``), batched.

        ``flip`` sums the vectors of each image and its mirror before normalising, as the
        verification protocol does. A ``desc`` shows progress under that name.
        """
        was_training = self.training
        self.eval()
        out = []
        with track(total=len(images), desc=desc, unit="img", disable=not desc) as bar:
            for s in range(0, len(images), batch_size):
                x = to_unit_float(images[s : s + batch_size]).to(self.device)
                e = self(x)
                if flip:
                    e = e + self(x.flip(-1))
                out.append(torch.nn.functional.normalize(e.float(), dim=1).cpu())
                bar.update(len(x))
        self.train(was_training)
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), np.float32)


def to_unit_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``[N,H,W,3]`` → float ``[N,3,H,W]`` in ``[0,1]``; float NCHW passes through."""
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:
        return x.permute(0, 3, 1, 2).float().div_(255.0)
    return x.float()
