"""Margin heads: class centres + a margin, returning the (soft-label) loss.

Targets may be soft: ``labels`` ``[B, K]`` with ``weights`` ``[B, K]`` (summing to 1), the
form SynFace's official training uses for identity and domain mixup: the logits are mixed,
``z = Σ_k w_k · z_k`` with ``z_k`` the margin logits for ``label_k`` (each label's column
carries its margin scaled by its weight), and the loss is ``Σ_k w_k · CE(z, label_k)`` on
that one softmax, lowest where the class probabilities equal the weights. Hard labels are
``K = 1`` with weight 1 (``z = z_1``), so the trainer never needs to know which it is feeding,
and weights ``(1, 0)`` give exactly the hard-label loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facefoundry.errors import FaceFoundryError
from facefoundry.models.base import ConfigModule, register_to_config
from facefoundry.models.margins import adaface_margin, combined_margin

PRESETS = {
    "arcface": (1.0, 0.5, 0.0),
    "cosface": (1.0, 0.0, 0.4),
    "sphereface": (1.7, 0.0, 0.0),
    "softmax": (1.0, 0.0, 0.0),
}


def as_soft(labels: torch.Tensor, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise targets to ``([B, K] labels, [B, K] weights)``."""
    if labels.dim() == 1:
        labels = labels[:, None]
    if weights is None:
        weights = torch.ones(labels.shape, dtype=torch.float32, device=labels.device)
    elif weights.dim() == 1:
        weights = weights[:, None]
    return labels, weights


def update_norm_stats(batch_mean: torch.Tensor, batch_std: torch.Tensor, norms: torch.Tensor, t_alpha: float) -> None:
    """AdaFace's running mean and std of the feature norms (clamped to [0.001, 100]), updated in place."""
    with torch.no_grad():
        safe = norms.detach().clamp(0.001, 100)
        batch_mean.mul_(1 - t_alpha).add_(t_alpha * safe.mean())
        batch_std.mul_(1 - t_alpha).add_(t_alpha * safe.std() if safe.numel() > 1 else 0.0)


class MarginHead(ConfigModule):
    batch_mean: torch.Tensor  # buffers, registered in __init__
    batch_std: torch.Tensor
    weights_name = "head.pth"

    @register_to_config
    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        kind: str = "arcface",
        s: float = 64.0,
        m1: float | None = None,
        m2: float | None = None,
        m3: float | None = None,
        m: float = 0.4,
        h: float = 0.333,
        t_alpha: float = 0.01,
    ):
        super().__init__()
        if kind not in (*PRESETS, "combined", "adaface"):
            raise FaceFoundryError(
                f"unknown head {kind!r}; choose one of: {', '.join([*PRESETS, 'combined', 'adaface'])}"
            )
        p = PRESETS.get(kind, (1.0, 0.0, 0.0))
        self.margins = (p[0] if m1 is None else m1, p[1] if m2 is None else m2, p[2] if m3 is None else m3)
        self.kind, self.s, self.m, self.h, self.t_alpha = kind, s, m, h, t_alpha
        self.weight = nn.Parameter(torch.normal(0, 0.01, (num_classes, embedding_size)))
        self.register_buffer("batch_mean", torch.tensor(20.0))
        self.register_buffer("batch_std", torch.tensor(100.0))

    def cosines(self, emb: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(emb.float(), dim=1), F.normalize(self.weight.float(), dim=1)).clamp(-1, 1)

    def _update_norm_stats(self, norms: torch.Tensor) -> None:
        update_norm_stats(self.batch_mean, self.batch_std, norms, self.t_alpha)

    def logits(
        self, emb: torch.Tensor, norms: torch.Tensor, label: torch.Tensor, cos: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scaled logits with the margin applied to column ``label`` of each row."""
        cos = self.cosines(emb) if cos is None else cos
        target = cos.gather(1, label[:, None]).squeeze(1)
        if self.kind == "adaface":
            adjusted = adaface_margin(target, norms, self.batch_mean, self.batch_std, self.m, self.h)
        else:
            adjusted = combined_margin(target, *self.margins)
        return self.s * cos.scatter(1, label[:, None], adjusted[:, None])

    def forward(
        self, emb: torch.Tensor, norms: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        labels, weights = as_soft(labels, weights)
        if self.kind == "adaface" and self.training:
            self._update_norm_stats(norms)
        cos = self.cosines(emb)
        w = weights.to(cos.dtype)
        z = w[:, :1] * self.logits(emb, norms, labels[:, 0], cos)
        for k in range(1, labels.shape[1]):
            z = z + w[:, k : k + 1] * self.logits(emb, norms, labels[:, k], cos)
        loss = emb.new_zeros((), dtype=torch.float32)
        for k in range(labels.shape[1]):
            loss = loss + (w[:, k] * F.cross_entropy(z, labels[:, k], reduction="none")).mean()
        return loss
