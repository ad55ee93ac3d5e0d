"""Vec2Face identity sampling: PCA on identity centres, Gaussian in PCA space, τ filter.

Following the Vec2Face authors' released recipe (HaiyuWu/Vec2Face issues #10/#11/#18):
per-identity centre vectors (e.g. 512-d ArcFace or 128-d dlib) are fitted by PCA, new
vectors are drawn from the multivariate normal of the PCA scores (mean and covariance of
the centres' scores, which is diagonal in the PCA basis) and mapped back with the inverse
transform; a candidate is kept only if its cosine similarity to every vector kept so far
is ≤ τ (default 0.3). ``avoid`` vectors (e.g. the real training identities) must also stay
≤ τ from every kept vector, so no real person is copied.

The filter is blockwise: candidates are compared with the kept set and ``avoid`` by matrix
products; only the greedy acceptance inside a block walks the block's own (small)
similarity matrix, so 100k identities never need a quadratic Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from facefoundry.errors import FaceFoundryError

NormMode = Literal["unit", "mean", "raw"]


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    unit: np.ndarray = x / np.maximum(n, 1e-12)
    return unit


def _as_matrix(x: np.ndarray, what: str, dim: int | None = None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise FaceFoundryError(f"{what}: expected a non-empty [N, D] array, got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise FaceFoundryError(f"{what}: vectors are {x.shape[1]}-d, expected {dim}-d")
    if not np.isfinite(x).all():
        raise FaceFoundryError(f"{what}: contains NaN or infinite values")
    return x


@dataclass
class IdentityPCA:
    """PCA of identity centre vectors with a Gaussian over the PCA scores.

    ``fit`` centres the data, keeps ``n_components`` principal axes (all by default) and
    records their variances; ``sample`` draws scores ~ N(0, diag(variances)) and maps them
    back (``scores @ components + mean``), i.e. ``multivariate_normal(mean, cov)`` in PCA
    space followed by ``inverse_transform`` as in the official recipe.
    """

    n_components: int | None = None
    normalize: bool = True  # ℓ2-normalise the centres before fitting (identity vectors are compared by cosine)
    mean_: np.ndarray | None = None
    components_: np.ndarray | None = None  # [K, D], orthonormal rows
    variances_: np.ndarray | None = None  # [K]
    mean_norm_: float | None = None  # mean ℓ2 norm of the centres as given (before normalising)

    def fit(self, centres: np.ndarray) -> IdentityPCA:
        x = _as_matrix(centres, "identity centres")
        if len(x) < 2:
            raise FaceFoundryError(f"identity centres: PCA needs at least 2 vectors, got {len(x)}")
        self.mean_norm_ = float(np.linalg.norm(x, axis=1).mean())
        if self.normalize:
            x = _unit(x)
        k_max = min(len(x) - 1, x.shape[1])
        k = k_max if self.n_components is None else self.n_components
        if not 1 <= k <= k_max:
            raise FaceFoundryError(
                f"IdentityPCA: n_components={k} must lie in [1, {k_max}] for {len(x)} centres of dimension {x.shape[1]}"
            )
        self.mean_ = x.mean(0)
        _, s, vt = np.linalg.svd(x - self.mean_, full_matrices=False)
        self.components_ = vt[:k]
        self.variances_ = s[:k] ** 2 / (len(x) - 1)
        return self

    @property
    def dim(self) -> int:
        self._check()
        assert self.components_ is not None  # _check raised otherwise
        return int(self.components_.shape[1])

    def _check(self) -> None:
        if self.components_ is None:
            raise FaceFoundryError("IdentityPCA: call fit(centres) before sampling")

    def transform(self, x: np.ndarray) -> np.ndarray:
        self._check()
        x = _as_matrix(x, "vectors", self.dim)
        assert self.components_ is not None  # _check raised otherwise
        scores: np.ndarray = (x - self.mean_) @ self.components_.T
        return scores

    def inverse_transform(self, scores: np.ndarray) -> np.ndarray:
        self._check()
        assert self.components_ is not None and self.mean_ is not None  # fit sets both; _check raised otherwise
        vectors: np.ndarray = np.asarray(scores) @ self.components_ + self.mean_
        return vectors

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` raw (not normalised) vectors [n, D] from the Gaussian in PCA space."""
        self._check()
        assert self.variances_ is not None  # fit sets it with components_; _check raised otherwise
        z = rng.standard_normal((n, len(self.variances_))) * np.sqrt(self.variances_)
        return self.inverse_transform(z)


class _TauFilter:
    """Incremental greedy τ filter over unit vectors; the kept set lives in one preallocated array."""

    def __init__(self, tau: float, capacity: int, dim: int, avoid: np.ndarray | None, chunk: int = 1024):
        self.tau, self.count, self.chunk = tau, 0, chunk
        self.kept = np.empty((capacity, dim), np.float32)
        self.avoid = None if avoid is None else _unit(avoid).astype(np.float32)

    def _clear(self, block: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """Mask of ``block`` rows with cosine ≤ τ to every row of ``ref``.

        ``ref`` is walked in chunks and rows already in conflict drop out of later chunks, so a
        rejected candidate costs about 1/P(conflict) dot products, not ``len(ref)``.
        """
        live = np.arange(len(block))
        for s in range(0, len(ref), self.chunk):
            if not len(live):
                break
            hit = (block[live] @ ref[s : s + self.chunk].T > self.tau).any(1)
            live = live[~hit]
        ok = np.zeros(len(block), bool)
        ok[live] = True
        return ok

    def add(self, cand: np.ndarray) -> np.ndarray:
        """Greedily accept rows of ``cand`` (in order) until full; return the accepted row indices."""
        u = _unit(cand).astype(np.float32)
        alive = np.ones(len(u), bool)
        if self.avoid is not None:
            alive &= self._clear(u, self.avoid)
        if self.count:
            idx = np.flatnonzero(alive)
            alive[idx] = self._clear(u[idx], self.kept[: self.count])
        idx = np.flatnonzero(alive)
        sims = u[idx] @ u[idx].T
        ok = np.ones(len(idx), bool)
        accepted = []
        room = len(self.kept) - self.count
        for i in range(len(idx)):
            if not ok[i]:
                continue
            accepted.append(i)
            if len(accepted) == room:
                break
            ok[i + 1 :] &= sims[i, i + 1 :] <= self.tau
        acc = idx[np.asarray(accepted, dtype=np.int64)]
        self.kept[self.count : self.count + len(acc)] = u[acc]
        self.count += len(acc)
        return acc


def tau_filter(
    candidates: np.ndarray, tau: float = 0.3, avoid: np.ndarray | None = None, block: int = 4096
) -> np.ndarray:
    """Indices of the greedily kept ``candidates`` (in order): pairwise cosine ≤ τ, and ≤ τ to ``avoid``."""
    x = _as_matrix(candidates, "candidates")
    av = None if avoid is None else _as_matrix(avoid, "avoid vectors", x.shape[1])
    f = _TauFilter(tau, len(x), x.shape[1], av)
    return np.concatenate([s + f.add(x[s : s + block]) for s in range(0, len(x), block)] or [np.empty(0, np.int64)])


def sample_identities(
    centres: np.ndarray | IdentityPCA,
    n: int,
    tau: float = 0.3,
    rng: np.random.Generator | None = None,
    avoid: np.ndarray | None = None,
    norm: NormMode = "unit",
    n_components: int | None = None,
    block: int = 4096,
    max_rounds: int = 1000,
    patience: int = 25,
) -> np.ndarray:
    """``n`` new identity vectors [n, D] (float32), pairwise cosine ≤ τ and ≤ τ to every ``avoid`` vector.

    ``centres`` are per-identity centre vectors (or an already fitted :class:`IdentityPCA`).
    Candidates are drawn ``block`` at a time from the PCA Gaussian and τ-filtered; after
    ``max_rounds`` blocks, or ``patience`` blocks in a row that add nothing, it stops with a
    :class:`FaceFoundryError` naming τ and how many identities it found.

    ``norm``: ``"unit"`` (default) returns ℓ2-normalised vectors, the form cosine-based
    encoders and the τ test use; ``"mean"`` rescales them to the mean norm of the centres as
    given (for generators conditioned on un-normalised features, e.g. Vec2Face's ArcFace
    features, and so that :func:`~facefoundry.sampling.perturb.perturb`'s per-dimension σ
    acts at the scale it was tuned for); ``"raw"`` keeps each PCA sample's own norm (what
    the official script saves).
    """
    if n < 1:
        raise FaceFoundryError(f"sample_identities: n must be ≥ 1, got {n}")
    if not -1.0 <= tau <= 1.0:
        raise FaceFoundryError(f"sample_identities: τ={tau} must lie in [-1, 1] (a cosine similarity)")
    if norm not in ("unit", "mean", "raw"):
        raise FaceFoundryError(f"sample_identities: norm={norm!r} must be 'unit', 'mean' or 'raw'")
    rng = np.random.default_rng() if rng is None else rng
    pca = centres if isinstance(centres, IdentityPCA) else IdentityPCA(n_components).fit(centres)
    av = None if avoid is None else _as_matrix(avoid, "avoid vectors", pca.dim)
    f = _TauFilter(tau, n, pca.dim, av)
    out = np.empty((n, pca.dim), np.float64)
    idle = rounds = 0
    while rounds < max_rounds:
        rounds += 1
        cand = pca.sample(block, rng)
        acc = f.add(cand)
        out[f.count - len(acc) : f.count] = cand[acc]
        if f.count == n:
            break
        idle = idle + 1 if len(acc) == 0 else 0
        if idle >= patience:
            break
    if f.count < n:
        raise FaceFoundryError(
            f"τ filter found only {f.count} of {n} identities at τ={tau} after "
            f"{rounds} rounds of {block} candidates; raise τ, lower n or fit more diverse centres"
        )
    if norm == "raw":
        return out.astype(np.float32)
    out = _unit(out)
    if norm == "mean":
        assert pca.mean_norm_ is not None  # fit sets it; pca.dim above raised for an unfitted PCA
        out *= pca.mean_norm_
    return out.astype(np.float32)
