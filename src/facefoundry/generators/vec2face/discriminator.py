"""Vec2Face's patch discriminator (the ViT-VQGAN one the official code uses), trained as an LSGAN.

A multi-scale "cross-embed" stem (3×3, 7×7, 15×15 convs concatenated), then per width step a
stride-2 4×4 conv + LeakyReLU + GroupNorm + residual block, then a 1×1 and a valid 4×4 conv to a map
of real/fake logits (the paper: dims 64-128-256-512, an 11×11 map at 112 px). It is switched on
late in training (``vec2face.disc_start_epoch``; the paper: epoch 80 of 100).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from facefoundry.models.base import ConfigModule, register_to_config


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, c), c)


class _CrossEmbed(nn.Module):
    def __init__(self, cin: int, cout: int, kernels: Sequence[int] = (3, 7, 15)):
        super().__init__()
        ks = sorted(kernels)
        dims = [cout // 2 ** (i + 1) for i in range(len(ks) - 1)]
        dims.append(cout - sum(dims))
        self.convs = nn.ModuleList(nn.Conv2d(cin, d, k, padding=k // 2) for k, d in zip(ks, dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([c(x) for c in self.convs], dim=1)


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(_gn(c), nn.LeakyReLU(0.1), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PatchDiscriminator(ConfigModule):
    """Images in ``[-1,1]`` ``[B,3,S,S]`` → logits ``[B,1,S/2^(k-1)-3, ·]`` for ``k = len(dims)``."""

    weights_name = "discriminator.pth"

    @register_to_config
    def __init__(self, dims: Sequence[int] = (16, 32, 64)):
        super().__init__()
        dims = list(dims)
        layers: list[nn.Module] = [nn.Sequential(_CrossEmbed(3, dims[0]), nn.LeakyReLU(0.1))]
        for cin, cout in itertools.pairwise(dims):
            layers.append(
                nn.Sequential(nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.1), _gn(cout), _Res(cout))
            )
        self.layers = nn.Sequential(*layers)
        self.to_logits = nn.Sequential(nn.Conv2d(dims[-1], dims[-1], 1), nn.LeakyReLU(0.1), nn.Conv2d(dims[-1], 1, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_logits(self.layers(x))
