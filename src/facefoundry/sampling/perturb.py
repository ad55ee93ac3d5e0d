"""Vec2Face per-image variation: v' = v + N(0, σ²I), renormalised to ‖v‖, σ from a mixture.

As in the official ``sample_nearby_vectors`` (HaiyuWu/Vec2Face ``image_generation.py``), σ is
the standard deviation of *each dimension* of the noise (not of its norm), the noise is added
to the centre as given (not normalised first) and the result is rescaled to the centre's own
norm. σ therefore acts at the scale of the vectors: for a centre of norm r in D dimensions the
expected cosine to the centre is about r / √(r² + σ²D). The official σ values were used on
un-normalised 512-d ArcFace features (r ≈ 20–30, cos ≈ 0.85–0.96); on unit vectors they would
swamp the identity, so rescale unit vectors first (``sample_identities(..., norm="mean")``) or
pick smaller σ.

The official script splits the images into exact 40/40/20 % blocks of σ = 0.3/0.5/0.7 and
shuffles; here σ is drawn per image from that mixture. An optional floor on the cosine to the
centre resamples the noise (same σ) for images below it, a bounded number of times, all rows
at once; images still below the floor then get their noise shrunk just enough to meet it,
recorded in ``PerturbResult.shrink``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facefoundry.errors import FaceFoundryError

SIGMAS: tuple[float, ...] = (0.3, 0.5, 0.7)
SIGMA_WEIGHTS: tuple[float, ...] = (0.4, 0.4, 0.2)


@dataclass
class PerturbResult:
    """``per_centre`` variations of each centre, in centre order (rows ``i*per_centre ... (i+1)*per_centre-1``)."""

    vectors: np.ndarray  # [N*per_centre, D] float32, each with its centre's norm
    sigma: np.ndarray  # [M] σ drawn from the mixture for each image
    similarity: np.ndarray  # [M] cosine(vector, centre) reached
    centre_index: np.ndarray  # [M] row of the centre each vector varies
    tries: np.ndarray  # [M] noise draws used (1 = first draw met the floor)
    shrink: np.ndarray  # [M] factor (≤ 1) applied to the noise after the last try; 1 almost always


def sample_sigmas(
    n: int, rng: np.random.Generator, sigmas: Sequence[float] = SIGMAS, weights: Sequence[float] = SIGMA_WEIGHTS
) -> np.ndarray:
    """``n`` σ values drawn independently from the mixture ``sigmas`` with probabilities ``weights``."""
    s = np.asarray(sigmas, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if s.ndim != 1 or len(s) == 0 or s.shape != w.shape:
        raise FaceFoundryError(f"σ mixture: {len(s)} sigmas but {len(w)} weights; give one weight per σ")
    if (s < 0).any() or (w < 0).any() or w.sum() <= 0:
        raise FaceFoundryError(
            f"σ mixture: sigmas {s.tolist()} and weights {w.tolist()} must be ≥ 0, weights not all 0"
        )
    return s[rng.choice(len(s), size=n, p=w / w.sum())]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos: np.ndarray = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return cos


def _shrink_to_floor(c: np.ndarray, noise: np.ndarray, floor: float, steps: int = 50) -> np.ndarray:
    """Per row, the largest s ∈ [0, 1] with cos(c + s·noise, c) ≥ floor (bisection; cos → 1 as s → 0)."""
    lo, hi = np.zeros(len(c)), np.ones(len(c))
    for _ in range(steps):
        mid = (lo + hi) / 2
        ok = _cos(c + mid[:, None] * noise, c) >= floor
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return lo


def perturb(
    centres: np.ndarray,
    per_centre: int,
    rng: np.random.Generator,
    sigmas: Sequence[float] = SIGMAS,
    weights: Sequence[float] = SIGMA_WEIGHTS,
    min_similarity: float | None = None,
    max_tries: int = 20,
) -> PerturbResult:
    """``per_centre`` variations v + N(0, σ²I) of every centre [N, D], rescaled to ‖v‖, σ per image from the mixture.

    With ``min_similarity``, images whose cosine to their centre is below it are redrawn (same
    σ) up to ``max_tries`` draws in all; the few left are shrunk onto the floor, so every
    returned similarity is ≥ ``min_similarity``.
    """
    c = np.asarray(centres, dtype=np.float64)
    if c.ndim != 2 or len(c) == 0:
        raise FaceFoundryError(f"perturb: centres must be a non-empty [N, D] array, got shape {c.shape}")
    norms = np.linalg.norm(c, axis=1)
    if not np.isfinite(c).all() or (norms <= 0).any():
        raise FaceFoundryError("perturb: centres must be finite and non-zero")
    if per_centre < 1 or max_tries < 1:
        raise FaceFoundryError(f"perturb: per_centre ({per_centre}) and max_tries ({max_tries}) must be ≥ 1")
    if min_similarity is not None and not -1.0 <= min_similarity < 1.0:
        raise FaceFoundryError(f"perturb: min_similarity={min_similarity} must lie in [-1, 1)")
    idx = np.repeat(np.arange(len(c)), per_centre)
    base = c[idx]
    sigma = sample_sigmas(len(idx), rng, sigmas, weights)
    noise = rng.standard_normal(base.shape) * sigma[:, None]
    tries = np.ones(len(idx), np.int64)
    shrink = np.ones(len(idx))
    if min_similarity is not None:
        for _ in range(max_tries - 1):
            bad = np.flatnonzero(_cos(base + noise, base) < min_similarity)
            if not len(bad):
                break
            noise[bad] = rng.standard_normal((len(bad), c.shape[1])) * sigma[bad, None]
            tries[bad] += 1
        bad = np.flatnonzero(_cos(base + noise, base) < min_similarity)
        if len(bad):
            shrink[bad] = _shrink_to_floor(base[bad], noise[bad], min_similarity)
            noise[bad] *= shrink[bad, None]
    v = base + noise
    v *= (norms[idx] / np.maximum(np.linalg.norm(v, axis=1), 1e-12))[:, None]
    return PerturbResult(v.astype(np.float32), sigma, _cos(v, base), idx, tries, shrink)
