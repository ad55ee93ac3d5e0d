"""Vec2Face tests; ``TinyEncoder`` stands in for the real identity encoder (fixed random conv net)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facefoundry.identity.base import EncoderInput, IdentityEncoder

# the smallest Vec2Face that trains in seconds on CPU (32 px, one block each side); tests add epochs and schedule
TINY_VEC2FACE = {
    "image_size": 32,
    "patch": 8,
    "width": 32,
    "depth": 1,
    "heads": 2,
    "decoder_depth": 1,
    "decoder_heads": 2,
    "decoder_channels": 8,
    "decoder_multipliers": [1, 1, 2, 2],
    "z_channels": 16,
    "disc_dims": [8, 16, 32],
    "batch_size": 8,
}


class TinyEncoder(IdentityEncoder):
    """A fixed random conv net + ℓ2-normalise: differentiable, any input side, ``features()`` optional."""

    name = "tiny"

    def __init__(self, dim: int = 128, with_features: bool = True, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.dim = dim
        self.input = EncoderInput("RGB", 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "arcface_template")
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 16, 3, 2, 1)
        self.fc = nn.Linear(16 * 16, dim)
        if not with_features:
            self.features = None  # type: ignore[assignment]

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
        a = F.relu(self.conv1(x * 2 - 1))
        return [a, F.relu(self.conv2(a))]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = F.adaptive_avg_pool2d(TinyEncoder.features(self, images)[-1], 4).flatten(1)
        return F.normalize(self.fc(h), dim=1)


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """One torch thread: these tiny models gain nothing from more, and on a shared 2-core machine
    OpenMP spin-waiting makes a multi-threaded step hundreds of times slower under load."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
