"""SynFace mixup (Qiu et al., 2021): the ratio grids, per-image identity partners, vector mixing.

Weightless and shared by every generator (identity mixup) and the trainer (domain mixup).
The official code draws a ratio from ``np.linspace(0, 1.05, 21, endpoint=False)`` (0, 0.05, …,
1.0, rounded to 3 decimals) and, for each image of identity *i*, a partner from the other
identities without replacement; the image gets ``α = φ·α_i + (1 − φ)·α_partner`` and the soft
label ``φ`` on *i*, ``1 − φ`` on the partner.

Draws come from their own random stream, so switching mixup on with φ = 1 leaves every other
random choice of a generator (and so every pixel) exactly as without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from facefoundry.errors import FaceFoundryError

if TYPE_CHECKING:
    import torch

OFFICIAL = np.round(np.linspace(0, 1.05, 21, endpoint=False), 3)
PRESETS: dict[str, np.ndarray] = {
    "official": OFFICIAL,
    "syn1": np.array([1.0]),  # the paper's Syn1: no mixup
    "syn2": np.array([0.8]),  # Syn2: φ fixed at 0.8
    "syn3": np.round(np.linspace(0.6, 1.0, 11), 3),  # Syn3: φ ∈ {0.6, 0.64, …, 1.0}
}


def ratio_grid(spec: str | Sequence[float]) -> np.ndarray:
    """The ratios φ (or ψ) are drawn from: a preset name or an explicit list in [0, 1]."""
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise FaceFoundryError(f"unknown mixup ratio set {spec!r}; choose one of {', '.join(PRESETS)} or a list")
        return PRESETS[spec].copy()
    grid = np.asarray(list(spec), dtype=np.float64)
    if grid.size == 0 or np.any((grid < 0) | (grid > 1)) or not np.all(np.isfinite(grid)):
        raise FaceFoundryError(f"mixup ratios must be a non-empty list within [0, 1], got {list(spec)}")
    return grid


def is_identity(spec: str | Sequence[float]) -> bool:
    """True when every ratio is 1: mixing changes nothing."""
    return bool(np.all(ratio_grid(spec) == 1.0))


@dataclass
class IdentityMix:
    """Per image: ``partner`` label (-1: none) and ``phi``, the weight of the image's own label."""

    partner: np.ndarray  # int64 [N]
    phi: np.ndarray  # float64 [N]

    @property
    def mixed(self) -> np.ndarray:
        return self.partner >= 0

    def record(self, j: int) -> dict[str, Any]:
        return {"partner": int(self.partner[j]), "phi": float(self.phi[j])}

    def soft_label(self, j: int, params: dict[str, Any]) -> tuple[int, float]:
        """Image ``j``'s ``(partner, φ)`` for the manifest; notes the mix in its ``params`` too."""
        params["mixup"] = self.record(j)
        return int(self.partner[j]), float(self.phi[j])


def draw_partners(labels: np.ndarray, num_identities: int, grid: np.ndarray, rng: np.random.Generator) -> IdentityMix:
    """A partner ≠ own identity and a ratio φ for every image (partners of one identity without
    replacement while there are enough others, as the official code). φ = 1 records no partner."""
    labels = np.asarray(labels, dtype=np.int64)
    if num_identities < 2:
        raise FaceFoundryError(f"identity mixup needs at least 2 identities, got {num_identities}")
    partner = np.empty(len(labels), dtype=np.int64)
    for i in np.unique(labels):
        rows = np.flatnonzero(labels == i)
        others = np.delete(np.arange(num_identities), i)
        partner[rows] = rng.choice(others, size=len(rows), replace=len(rows) > len(others))
    phi = rng.choice(grid, size=len(labels)).astype(np.float64)
    partner[phi >= 1.0] = -1
    return IdentityMix(partner, phi)


def mix_vectors(vectors: np.ndarray, partners: np.ndarray, mix: IdentityMix, renormalise: bool) -> np.ndarray:
    """``φ·v + (1 − φ)·p`` for the mixed rows (``partners[j]`` is the partner's vector of row ``j``);
    with ``renormalise`` each mixed vector keeps its own row's norm. Unmixed rows are returned unchanged."""
    out = np.array(vectors, copy=True)
    m = mix.mixed
    if not m.any():
        return out
    phi = mix.phi[m, None]
    mixed = phi * vectors[m] + (1 - phi) * partners[m]
    if renormalise:
        own = np.linalg.norm(vectors[m], axis=1, keepdims=True)
        mixed = mixed * own / np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12)
    out[m] = mixed.astype(out.dtype)
    return out


def soft_targets(labels: torch.Tensor, partner: torch.Tensor, phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``([B, 2] labels, [B, 2] weights)`` for the margin head: own label with φ, partner with 1 − φ
    (a row without partner gets its own label twice, weights 1 and 0)."""
    import torch

    other = torch.where(partner >= 0, partner, labels)
    w = phi.to(torch.float32)
    return torch.stack([labels, other], 1), torch.stack([w, 1 - w], 1)
