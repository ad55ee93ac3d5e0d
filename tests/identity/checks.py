"""Checks every differentiable identity encoder must pass (dlib, SFace, …)."""

from __future__ import annotations

import torch


def gradients_reach_the_input(encoder, dim: int = 128) -> None:
    """An identity loss through ``encoder`` sends a finite, non-zero gradient to the pixels (through its own resize
    or warp), and leaves the encoder's weights frozen."""
    x = torch.rand(2, 3, 56, 56, requires_grad=True)
    target = torch.nn.functional.normalize(torch.randn(2, dim), dim=1)
    loss = (1 - (encoder(x) * target).sum(1)).mean()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in encoder.parameters())  # the encoder itself stays frozen
