"""A judge encoder's view of a dataset: how alike are images of one identity, and of different ones.

Pure functions on unit vectors and labels; the validate stage logs their histograms to MLflow.
A generator should not be judged only by the encoder it was trained against, so any number of
judges (``identity.judges``) can score the same dataset.
"""

from __future__ import annotations

import numpy as np


def sample_balanced(labels: np.ndarray, max_images: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``max_images`` images, as many identities as possible, ≥ 2 per identity."""
    labels = np.asarray(labels)
    if len(labels) <= max_images:
        return np.arange(len(labels))
    classes = rng.permutation(np.unique(labels))
    per = max(2, int(np.ceil(max_images / len(classes))))
    picks: list[int] = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        picks += rng.choice(idx, min(per, len(idx)), replace=False).tolist()
        if len(picks) >= max_images:
            break
    return np.sort(np.asarray(picks[:max_images]))


def identity_similarities(
    emb: np.ndarray, labels: np.ndarray, max_pairs: int = 200_000, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities of all same-identity pairs and of (at most ``max_pairs``) different-identity pairs."""
    rng = rng or np.random.default_rng(0)
    labels = np.asarray(labels)
    sims = emb @ emb.T
    iu, ju = np.triu_indices(len(labels), 1)
    same = labels[iu] == labels[ju]
    intra = sims[iu[same], ju[same]]
    inter_i, inter_j = iu[~same], ju[~same]
    if len(inter_i) > max_pairs:
        keep = rng.choice(len(inter_i), max_pairs, replace=False)
        inter_i, inter_j = inter_i[keep], inter_j[keep]
    return intra.astype(np.float64), sims[inter_i, inter_j].astype(np.float64)


def consistency_metrics(intra: np.ndarray, inter: np.ndarray) -> dict[str, float]:
    """Means, spreads, the gap between them in pooled standard deviations (d′), and overlap."""
    out = {
        "intra_mean": float(intra.mean()) if intra.size else float("nan"),
        "intra_std": float(intra.std()) if intra.size else float("nan"),
        "inter_mean": float(inter.mean()) if inter.size else float("nan"),
        "inter_std": float(inter.std()) if inter.size else float("nan"),
    }
    if intra.size and inter.size:
        pooled = np.sqrt((intra.var() + inter.var()) / 2) or 1e-12
        out["d_prime"] = float((intra.mean() - inter.mean()) / pooled)
        thr = np.quantile(inter, 0.99)  # fraction of same-identity pairs above the 1 % false-match similarity
        out["intra_above_inter_p99"] = float((intra > thr).mean())
    return out


def intra_by_group(emb: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> dict[float, float]:
    """Mean same-identity cosine among images that share a group value (e.g. Vec2Face's σ).

    For each group ``g``: the mean cosine over pairs of images with the same label, both in ``g``
    — how alike one identity's images stay as the perturbation grows.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    out: dict[float, float] = {}
    for g in np.unique(groups):
        sel = np.flatnonzero(groups == g)
        intra, _ = identity_similarities(emb[sel], labels[sel], max_pairs=1)
        if intra.size:
            out[float(g)] = float(intra.mean())
    return out
