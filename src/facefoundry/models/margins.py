"""Margin functions: weightless maps from target cosines to margin-adjusted logits.

Kept apart from the heads (which own the class centres) so a margin can be tested
against its formula and reused by any classifier.
"""

from __future__ import annotations

import math

import torch

EPS = 1e-7


def combined_margin(target: torch.Tensor, m1: float, m2: float, m3: float) -> torch.Tensor:
    """insightface's combined margin on the target column: ``cos(m1·θ + m2) − m3``.

    ArcFace is (1, m, 0), CosFace (1, 0, m), SphereFace (m, 0, 0). Where
    ``m1·θ + m2`` passes π the logit would stop decreasing with θ, so — as insightface
    does — it falls back to ``cos θ − m3 − m2·sin m2``, which keeps it monotonic.
    """
    if m1 == 1.0 and m2 == 0.0:
        return target - m3
    theta = torch.acos(target.clamp(-1 + EPS, 1 - EPS))
    angle = m1 * theta + m2
    phi = torch.cos(angle) - m3
    fallback = target - m3 - m2 * math.sin(m2)
    return torch.where(angle <= math.pi, phi, fallback)


def adaface_margin(
    target: torch.Tensor, norms: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, m: float, h: float
) -> torch.Tensor:
    """AdaFace (Kim et al., 2022) on the target column.

    The feature norm, standardised by its running batch statistics and scaled by
    ``h``, gives ``ŝ ∈ [−1, 1]``; the angular margin is ``−m·ŝ`` and the additive one
    ``m·ŝ + m``: high-norm (high-quality) samples get an ArcFace-like margin,
    low-norm ones a CosFace-like one.
    """
    safe = norms.detach().clamp(0.001, 100).squeeze(1)
    scaler = ((safe - mean) / (std + 1e-3) * h).clamp(-1, 1)
    theta = torch.acos(target.clamp(-1 + EPS, 1 - EPS))
    theta_m = (theta - m * scaler).clamp(EPS, math.pi - EPS)
    return torch.cos(theta_m) - (m + m * scaler)
