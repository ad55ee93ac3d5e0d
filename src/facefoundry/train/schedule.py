"""Per-step learning rate: linear warm-up then cosine or step decay."""

from __future__ import annotations

import math


def lr_at(
    step: int,
    total: int,
    base_lr: float,
    warmup: int,
    schedule: str,
    milestones: list[int] | None = None,
    gamma: float = 0.1,
) -> float:
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    if schedule == "cosine":
        span = max(1, total - warmup)
        return 0.5 * base_lr * (1 + math.cos(math.pi * min(1.0, (step - warmup) / span)))
    drops = sum(step >= m for m in (milestones or []))
    return base_lr * gamma**drops
