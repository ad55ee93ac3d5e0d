"""fMAE row masking (Vec2Face §3): which rows of the feature map the encoder never sees.

Each batch draws one **mask ratio** from a normal truncated to ``[min, max]`` (training: min 0.5,
mean 0.75, σ 0.25; generation: min 0.1, mean 0.15, σ 0.25; max 1). Per image, a random
``ceil(N·ratio)`` of the ``N`` feature-token rows are **masked** — their content is replaced by the
projected identity vector (the image feature) — and the first ``ceil(N·min)`` of those are also
**dropped**: removed from the encoder's input, then refilled in the decoder with the encoder's output
for the identity token. So ``dropped ⊆ masked`` for every image, with the same counts across a batch.

Weightless: plain torch; randomness comes from an optional ``torch.Generator`` (else the global RNG).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from facefoundry.errors import FaceFoundryError


@dataclass(frozen=True)
class MaskRatioSampler:
    """A normal ``N(mean, std²)`` truncated to ``[min, max]``, sampled by inverse CDF."""

    min: float
    mean: float
    std: float
    max: float = 1.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.min <= self.max <= 1.0):
            raise FaceFoundryError(f"mask ratio: need 0 <= min <= max <= 1, got min={self.min} max={self.max}")
        if self.std <= 0:
            raise FaceFoundryError(f"mask ratio: std must be positive, got {self.std}")

    def sample(self, n: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` ratios (float64, CPU), each in ``[min, max]``."""
        normal = torch.distributions.Normal(
            torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
        )
        lo = normal.cdf(torch.tensor((self.min - self.mean) / self.std, dtype=torch.float64))
        hi = normal.cdf(torch.tensor((self.max - self.mean) / self.std, dtype=torch.float64))
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        p = (lo + u * (hi - lo)).clamp(1e-12, 1 - 1e-12)
        return (self.mean + self.std * torch.special.ndtri(p)).clamp(self.min, self.max)

    def expected(self) -> float:
        """The truncated distribution's mean (what ``sample`` averages to)."""
        a, b = (self.min - self.mean) / self.std, (self.max - self.mean) / self.std

        def pdf(x: float) -> float:
            return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)

        def cdf(x: float) -> float:
            return 0.5 * (1 + math.erf(x / math.sqrt(2)))

        z = cdf(b) - cdf(a)
        return self.mean + self.std * (pdf(a) - pdf(b)) / z if z > 0 else self.mean


TRAIN_MASKING = MaskRatioSampler(0.5, 0.75, 0.25)  # the paper's training distribution
GENERATE_MASKING = MaskRatioSampler(0.1, 0.15, 0.25)  # the paper's generation distribution


@dataclass
class RowMasks:
    """Per-image row masks over the ``N`` feature tokens (the identity token is never masked).

    ``kept``: ``[B, N-n_drop]`` sorted indices of rows the encoder sees; ``masked``/``dropped``:
    ``[B, N]`` bool, ``dropped ⊆ masked``.
    """

    masked: torch.Tensor
    dropped: torch.Tensor
    kept: torch.Tensor
    ratio: float

    def to(self, device: torch.device) -> RowMasks:
        return RowMasks(self.masked.to(device), self.dropped.to(device), self.kept.to(device), self.ratio)


def row_masks(
    batch: int, rows: int, ratio: float, drop_ratio: float, generator: torch.Generator | None = None
) -> RowMasks:
    """Mask ``ceil(rows·ratio)`` random rows per image; drop the ``ceil(rows·min(drop_ratio, ratio))`` first.

    The rows are ranked by one uniform draw per row (ties broken by ``argsort``, so the counts are
    exact — the official code re-draws on ties instead).
    """
    n_mask = min(rows, math.ceil(rows * ratio - 1e-9))
    n_drop = min(n_mask, math.ceil(rows * min(drop_ratio, ratio) - 1e-9))
    order = torch.rand(batch, rows, generator=generator).argsort(dim=1)
    rank = order.argsort(dim=1)  # rank[b, r]: position of row r in the random order
    masked = rank < n_mask
    dropped = rank < n_drop
    kept = order[:, n_drop:].sort(dim=1).values
    return RowMasks(masked, dropped, kept, float(ratio))
