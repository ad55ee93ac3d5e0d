"""Identity sampling with a minimum separation, shared by every parametric generator."""

from __future__ import annotations

import numpy as np

from facefoundry.errors import FaceFoundryError


def sample_separated(
    n: int,
    dim: int,
    min_distance: float,
    rng: np.random.Generator,
    existing: np.ndarray | None = None,
    max_tries: int = 200,
) -> np.ndarray:
    """``n`` points in ``[-1, 1]^dim``, each at least ``min_distance`` (RMS per coordinate) from all others.

    Distance is the ℓ2 norm divided by √dim, so the setting means the same whatever the
    number of parameters. Points in ``existing`` (e.g. training identities when sampling
    a benchmark) are avoided too.
    """
    pts = np.empty((0, dim)) if existing is None else np.asarray(existing, dtype=np.float64)
    keep = len(pts)
    out = pts
    scale = np.sqrt(dim)
    for i in range(n):
        for _ in range(max_tries):
            cand = rng.uniform(-1, 1, dim)
            if len(out) == 0 or np.min(np.linalg.norm(out - cand, axis=1)) / scale >= min_distance:
                out = np.vstack([out, cand])
                break
        else:
            raise FaceFoundryError(
                f"could not place identity {i + 1} of {n} at min_identity_distance={min_distance} "
                f"after {max_tries} tries; lower the distance or the identity count"
            )
    return out[keep:]


def perturb(points: np.ndarray, distance: float, rng: np.random.Generator) -> np.ndarray:
    """A 'twin' of each point at exactly ``distance`` (same RMS-per-coordinate measure), clipped to the box."""
    d = rng.normal(size=points.shape)
    d *= distance * np.sqrt(points.shape[1]) / np.linalg.norm(d, axis=1, keepdims=True)
    return np.clip(points + d, -1, 1)


def uniform_count(g) -> int:  # GenerateCfg
    """Images per identity for generators that make the same number for every identity."""
    counts = set(g.image_counts())
    if len(counts) > 1:
        raise FaceFoundryError(
            f"generate.identity_groups: only the render generator makes long-tailed sets (generator {g.generator!r})"
        )
    return counts.pop()
