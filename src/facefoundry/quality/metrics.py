"""Data-quality metrics of a face dataset, computed from identity vectors: pure numpy/scipy, no I/O.

Measures and where they come from:

* identity separability: share of identities whose centre has no other identity's centre within a
  cosine threshold, as Vec2Face (Wu et al. 2024) uses to filter sampled identities;
* mislabelled images: leave-one-out centre cosine against the nearest other centre;
* leakage: centres too close to any image of a verification benchmark;
* Fréchet distance between Gaussians fitted to two feature sets, as in FID (Heusel et al. 2017);
* unbiased kernel MMD² with the polynomial kernel k(x, y) = (x·y/d + 1)^3, as in KID
  (Bińkowski et al. 2018, "Demystifying MMD GANs");
* density & coverage of Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models";
* Jensen–Shannon divergence (base 2) between histograms, as IDSync reports for attribute distributions;
* a 64-bit DCT perceptual hash (pHash) and near-duplicate groups by Hamming distance;
* a summary of head-pose angles.

Large pairwise computations are done in blocks of rows so memory stays well under 1 GB.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import fft as sfft
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components

_BLOCK_ELEMENTS = 1 << 23  # entries of one block of a pairwise matrix (64 MB as float64)
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601


def _block_rows(cols: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(int(cols), 1))


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit ℓ2 norm (float64); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    unit: np.ndarray = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    return unit


def _rows(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [rows, features], got shape {x.shape}")
    return x


def _label_sums(emb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(sorted unique labels [C], index of each row's label [N], per-label sums [C, d], counts [C])."""
    emb = _rows(emb, "emb")
    labels = np.asarray(labels).ravel()
    if len(labels) != len(emb):
        raise ValueError(f"{len(emb)} vectors but {len(labels)} labels")
    uniq, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    # sparse [C, N] indicator @ emb: per-label sums without copying emb
    indicator = csr_matrix((np.ones(len(inv)), (inv, np.arange(len(inv)))), shape=(len(uniq), len(inv)))
    sums = np.asarray(indicator @ emb, dtype=np.float64).reshape(len(uniq), emb.shape[1])
    return uniq, inv, sums, counts


def centre_space(emb: np.ndarray, mean: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(unit(emb − mean), mean); ``mean`` defaults to the rows' mean. Rows equal to the mean stay zero."""
    emb = _rows(emb, "emb")
    mean = emb.mean(axis=0) if mean is None else np.asarray(mean, dtype=np.float64)
    return _unit(emb - mean), mean


def identity_centres(emb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ℓ2-normalised mean vector per label (float64 [C, d]) and the sorted unique labels [C]."""
    uniq, _, sums, _ = _label_sums(emb, labels)
    return _unit(sums), uniq


def separability(centres: np.ndarray, threshold: float = 0.4) -> dict[str, Any]:
    """Each identity's highest cosine to any other (unit) centre; separable when it is < ``threshold``."""
    c = _unit(_rows(centres, "centres"))
    n = len(c)
    best = np.full(n, -1.0)
    step = _block_rows(n)
    for lo in range(0, n, step):
        sims = c[lo : lo + step] @ c.T
        rows = np.arange(len(sims))
        sims[rows, lo + rows] = -np.inf
        best[lo : lo + step] = np.maximum(sims.max(axis=1, initial=-1.0), -1.0)
    count = int((best < threshold).sum())
    return {"separable_identities": count, "separability": count / n if n else 0.0, "max_similarity": best}


def mislabelled(emb: np.ndarray, labels: np.ndarray, margin: float = 0.0, min_share: float = 0.25) -> dict[str, Any]:
    """Images closer to another identity's centre than to their own leave-one-out centre.

    ``own``: cosine of image i to the centre of its identity without i; ``other``: highest cosine to
    any other identity's (full) centre. Flagged when other − own > ``margin``; identities with one
    image are never flagged. ``identities``: labels with a flagged share ≥ ``min_share`` (and at least
    one flagged image): a class that is really two people, or a copy of another class.
    """
    x = _unit(_rows(emb, "emb"))
    labels = np.asarray(labels).ravel()
    uniq, inv, sums, counts = _label_sums(x, labels)
    n, c = len(x), len(uniq)
    centres = _unit(sums)
    sq_sums = np.einsum("ij,ij->i", sums, sums)
    flagged = np.zeros(n, dtype=bool)
    nearest = labels.copy()  # with a single identity there is no other centre: nearest = own label
    step = _block_rows(c)
    for lo in range(0, n, step):
        xb, ib = x[lo : lo + step], inv[lo : lo + step]
        rows = np.arange(len(xb))
        # leave-one-out own cosine: x·(S − x) / ‖S − x‖
        dot = np.einsum("ij,ij->i", xb, sums[ib])
        sq_x = np.einsum("ij,ij->i", xb, xb)
        sq_den = sq_sums[ib] - 2.0 * dot + sq_x
        den = np.sqrt(np.clip(sq_den, 0.0, None))
        own = np.divide(dot - sq_x, den, out=np.zeros_like(den), where=den > 1e-12)
        if c < 2:
            continue
        sims = xb @ centres.T
        sims[rows, ib] = -np.inf
        idx = sims.argmax(axis=1)
        other = sims[rows, idx]
        nearest[lo : lo + step] = uniq[idx]
        flagged[lo : lo + step] = (other - own > margin) & (counts[ib] > 1)
    images = np.flatnonzero(flagged)
    per_class = np.bincount(inv[images], minlength=c)
    bad = (per_class > 0) & (per_class >= min_share * counts)
    return {"images": images, "fraction": len(images) / n if n else 0.0, "identities": uniq[bad], "nearest": nearest}


def leakage(centres: np.ndarray, reference: np.ndarray, threshold: float) -> dict[str, Any]:
    """Centres whose highest cosine to any (unit) reference vector is ≥ ``threshold``."""
    c = _unit(_rows(centres, "centres"))
    ref = _unit(np.asarray(reference, dtype=np.float64).reshape(-1, c.shape[1]))
    best = np.full(len(c), -1.0)
    nearest = np.full(len(c), -1, dtype=np.int64)
    if len(ref):
        step = _block_rows(len(ref))
        for lo in range(0, len(c), step):
            sims = c[lo : lo + step] @ ref.T
            idx = sims.argmax(axis=1)
            nearest[lo : lo + step] = idx
            best[lo : lo + step] = sims[np.arange(len(sims)), idx]
    leaked = np.flatnonzero(best >= threshold) if len(ref) else np.zeros(0, dtype=np.int64)
    return {"identities": leaked, "max_similarity": best, "nearest": nearest}


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (tiny negative eigenvalues clipped)."""
    w, v = np.linalg.eigh((m + m.T) / 2.0)
    root: np.ndarray = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    return root


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """‖μa − μb‖² + tr Σa + tr Σb − 2 tr (Σa Σb)^½ between Gaussians fitted to two sets (ddof=1), ≥ 0."""
    a, b = _rows(a, "a"), _rows(b, "b")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"frechet_distance needs at least 2 rows in each set, got {len(a)} and {len(b)}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    cov_a = np.atleast_2d(np.cov(a, rowvar=False, ddof=1))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False, ddof=1))
    root_a = _sqrtm_psd(cov_a)
    inner = root_a @ cov_b @ root_a
    eig = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    tr_cross = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = a.mean(axis=0) - b.mean(axis=0)
    value = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_cross)
    return max(value, 0.0)


def kernel_mmd(
    a: np.ndarray, b: np.ndarray, degree: int = 3, max_samples: int = 2000, rng: np.random.Generator | None = None
) -> float:
    """Unbiased MMD² with the kernel (x·y/d + 1)^degree on ≤ ``max_samples`` random rows of each set (KID)."""
    a, b = _rows(a, "a"), _rows(b, "b")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"kernel_mmd needs at least 2 rows in each set, got {len(a)} and {len(b)}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    rng = np.random.default_rng(0) if rng is None else rng
    if len(a) > max_samples:
        a = a[rng.choice(len(a), max_samples, replace=False)]
    if len(b) > max_samples:
        b = b[rng.choice(len(b), max_samples, replace=False)]
    d = a.shape[1]
    m, n = len(a), len(b)
    k_aa = (a @ a.T / d + 1.0) ** degree
    k_bb = (b @ b.T / d + 1.0) ** degree
    k_ab = (a @ b.T / d + 1.0) ** degree
    term_a = (k_aa.sum() - np.trace(k_aa)) / (m * (m - 1))
    term_b = (k_bb.sum() - np.trace(k_bb)) / (n * (n - 1))
    return float(term_a + term_b - 2.0 * k_ab.mean())


def _sq_dists(x: np.ndarray, y: np.ndarray, sq_x: np.ndarray, sq_y: np.ndarray) -> np.ndarray:
    dist: np.ndarray = np.clip(sq_x[:, None] + sq_y[None, :] - 2.0 * (x @ y.T), 0.0, None)
    return dist


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) of ``fake`` against ``real``, Euclidean k-NN balls.

    Radius of real_i: distance to its k-th nearest other real sample. Membership uses ≤ (with a
    rounding tolerance), so every sample lies in its own ball: a set against itself has coverage 1
    and density (k+1)/k when there are no ties; two samples of one distribution give density ≈ 1.
    """
    real, fake = _rows(real, "real"), _rows(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}")
    if len(real) <= k:
        raise ValueError(f"density_coverage needs more than k={k} real samples, got {len(real)}")
    if len(fake) == 0:
        raise ValueError("density_coverage needs at least one fake sample")
    centre = real.mean(axis=0)  # distances are translation-invariant; centring reduces rounding error
    real, fake = real - centre, fake - centre
    sq_real = np.einsum("ij,ij->i", real, real)
    sq_fake = np.einsum("ij,ij->i", fake, fake)
    tol = 1e-9 * float(max(sq_real.max(), sq_fake.max(), 1e-300))
    radius = np.empty(len(real))
    step = _block_rows(len(real))
    for lo in range(0, len(real), step):
        dist = _sq_dists(real[lo : lo + step], real, sq_real[lo : lo + step], sq_real)
        rows = np.arange(len(dist))
        dist[rows, lo + rows] = np.inf
        radius[lo : lo + step] = np.partition(dist, k - 1, axis=1)[:, k - 1]
    inside = 0
    covered = np.zeros(len(real), dtype=bool)
    for lo in range(0, len(fake), step):
        hit = _sq_dists(fake[lo : lo + step], real, sq_fake[lo : lo + step], sq_real) <= radius[None, :] + tol
        inside += int(hit.sum())
        covered |= hit.any(axis=0)
    return inside / (k * len(fake)), float(covered.mean())


def js_divergence(
    a: np.ndarray, b: np.ndarray, bins: int = 50, value_range: tuple[float, float] | None = None
) -> float:
    """Jensen–Shannon divergence (base 2, in [0, 1]) of the histograms of two 1-D samples on shared bins.

    Non-finite values are dropped; the range defaults to the joint min/max.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        raise ValueError("js_divergence needs at least one finite value in each sample")
    if value_range is None:
        value_range = (float(min(a.min(), b.min())), float(max(a.max(), b.max())))
    p = np.histogram(a, bins=bins, range=value_range)[0].astype(np.float64)
    q = np.histogram(b, bins=bins, range=value_range)[0].astype(np.float64)
    if p.sum() == 0 or q.sum() == 0:
        raise ValueError(f"no values within range {value_range}")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2.0

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float((x[nz] * np.log2(x[nz] / m[nz])).sum())

    return float(np.clip(0.5 * kl(p) + 0.5 * kl(q), 0.0, 1.0))


def _area_matrix(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] weights of area-averaging resampling (each row sums to 1)."""
    scale = size_in / size_out
    start = np.arange(size_out)[:, None] * scale
    j = np.arange(size_in)[None, :]
    overlap: np.ndarray = np.clip(np.minimum(start + scale, j + 1) - np.maximum(start, j), 0.0, None)
    return overlap / scale


def phash(images: np.ndarray) -> np.ndarray:
    """64-bit DCT perceptual hash of uint8 RGB images [N, H, W, 3] -> np.uint64 [N].

    BT.601 luma, area resize to 32×32, 2-D DCT-II (orthonormal), top-left 8×8 block; a bit is set
    when its coefficient exceeds the median of the 63 non-DC coefficients (first coefficient = MSB).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"phash expects RGB images [N, H, W, 3], got shape {images.shape}")
    n, h, w, _ = images.shape
    rows, cols = _area_matrix(h, 32), _area_matrix(w, 32)
    out = np.empty(n, dtype=np.uint64)
    step = max(1, (1 << 22) // max(h * w, 1))
    for lo in range(0, n, step):
        grey = images[lo : lo + step].astype(np.float64) @ _LUMA
        small = rows @ grey @ cols.T
        low = sfft.dctn(small, type=2, norm="ortho", axes=(1, 2))[:, :8, :8].reshape(len(small), 64)
        median = np.median(low[:, 1:], axis=1, keepdims=True)
        packed = np.packbits(low > median, axis=1)  # [B, 8] uint8, big-endian bit order
        out[lo : lo + step] = packed.view(">u8").ravel().astype(np.uint64)
    return out


def _popcount(x: np.ndarray) -> np.ndarray:
    counts: np.ndarray
    if hasattr(np, "bitwise_count"):
        counts = np.bitwise_count(x)
        return counts
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    counts = table[x.view(np.uint8).reshape(*x.shape, 8)].sum(axis=-1)
    return counts


def near_duplicates(hashes: np.ndarray, max_bits: int = 4) -> list[list[int]]:
    """Groups (connected components) of indices whose hashes differ in ≤ ``max_bits`` bits; size ≥ 2 only."""
    h = np.asarray(hashes, dtype=np.uint64).ravel()
    n = len(h)
    if n < 2:
        return []
    src, dst = [], []
    step = _block_rows(n)
    for lo in range(0, n, step):
        block = h[lo : lo + step]
        close = _popcount(block[:, None] ^ h[None, lo:]) <= max_bits  # only columns ≥ lo: upper triangle
        i, j = np.nonzero(close)
        keep = j > i  # drop self and the lower triangle of the diagonal block
        src.append(i[keep] + lo)
        dst.append(j[keep] + lo)
    i, j = np.concatenate(src), np.concatenate(dst)
    if len(i) == 0:
        return []
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp)
    groups: dict[int, list[int]] = {}
    for idx in np.flatnonzero(sizes[comp] >= 2):
        groups.setdefault(int(comp[idx]), []).append(int(idx))
    return sorted(groups.values(), key=lambda g: g[0])


def pose_summary(poses: dict[str, np.ndarray], bins: int = 12) -> dict[str, Any]:
    """Per angle (degrees; NaN = not recorded): mean, std, min, max, share with |angle| > 30, and entropy.

    ``{k}_entropy`` is the normalised entropy (in [0, 1]) of a ``bins``-bin histogram on [-90, 90]
    (values outside are clipped in): 0 = one pose only, 1 = uniform spread. Keys without values are omitted.
    """
    out: dict[str, float] = {}
    for key, values in poses.items():
        v = np.asarray(values, dtype=np.float64).ravel()
        v = v[~np.isnan(v)]
        if len(v) == 0:
            continue
        hist = np.histogram(np.clip(v, -90.0, 90.0), bins=bins, range=(-90.0, 90.0))[0].astype(np.float64)
        p = hist[hist > 0] / hist.sum()
        entropy = float(-(p * np.log(p)).sum() / np.log(bins)) if bins > 1 else 0.0
        out.update(
            {
                f"{key}_mean": float(v.mean()),
                f"{key}_std": float(v.std()),
                f"{key}_min": float(v.min()),
                f"{key}_max": float(v.max()),
                f"{key}_abs_gt_30": float((np.abs(v) > 30.0).mean()),
                f"{key}_entropy": max(entropy, 0.0),
            }
        )
    return out
