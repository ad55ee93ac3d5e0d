import time

import numpy as np
import pytest

from facefoundry.errors import FaceFoundryError
from facefoundry.sampling import IdentityPCA, sample_identities, tau_filter


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _centres(n=400, d=128, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) * np.linspace(2.0, 0.5, d) + 0.3  # anisotropic, non-zero mean


def test_pca_reproduces_the_centres_statistics():
    c = _unit(_centres(2000, 32))
    pca = IdentityPCA().fit(c)
    s = pca.sample(20000, np.random.default_rng(1))
    assert np.allclose(s.mean(0), c.mean(0), atol=0.02)
    cov_err = np.abs(np.cov(s, rowvar=False) - np.cov(c, rowvar=False)).max()
    assert cov_err < 0.1 * np.abs(np.cov(c, rowvar=False)).max()
    assert np.allclose(pca.inverse_transform(pca.transform(c)), c, atol=1e-8)  # all components kept


def test_tau_filter_guarantees_pairwise_and_avoid_bound():
    rng = np.random.default_rng(0)
    cand = rng.standard_normal((3000, 32))
    avoid = rng.standard_normal((5, 32))
    keep = tau_filter(cand, 0.3, avoid=avoid, block=500)
    u = _unit(cand[keep])
    s = u @ u.T
    np.fill_diagonal(s, -1)
    assert 50 < len(keep) < 3000
    assert s.max() <= 0.3 + 1e-6
    assert (u @ _unit(avoid).T).max() <= 0.3 + 1e-6
    # greedy in order: every rejected candidate conflicts with a kept one or an avoid vector
    rejected = np.setdiff1d(np.arange(len(cand)), keep)
    ref = np.vstack([u, _unit(avoid)])
    assert ((_unit(cand[rejected]) @ ref.T).max(1) > 0.3).all()


def test_sample_identities_respects_tau_avoid_and_is_reproducible():
    c = _centres()
    avoid = _unit(c[:100])
    a = sample_identities(c, 500, 0.3, np.random.default_rng(5), avoid=avoid, block=256)
    b = sample_identities(c, 500, 0.3, np.random.default_rng(5), avoid=avoid, block=256)
    assert a.shape == (500, 128) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    s = a @ a.T
    np.fill_diagonal(s, -1)
    assert s.max() <= 0.3 + 1e-5
    assert (a @ avoid.T).max() <= 0.3 + 1e-5


def test_norm_modes():
    c = _centres(300, 16) * 7.0
    rng = np.random.default_rng(0)
    m = sample_identities(c, 20, 0.5, rng, norm="mean")
    assert np.allclose(np.linalg.norm(m, axis=1), np.linalg.norm(c, axis=1).mean(), rtol=1e-5)
    raw = sample_identities(c, 20, 0.5, rng, norm="raw")
    assert np.linalg.norm(raw, axis=1).std() > 0  # each PCA sample keeps its own norm
    with pytest.raises(FaceFoundryError, match="norm="):
        sample_identities(c, 5, 0.5, rng, norm="l1")


def test_impossible_tau_fails_with_a_clear_message():
    c = _centres(100, 8)
    with pytest.raises(FaceFoundryError, match=r"found only \d+ of 1000 identities at τ=0.0"):
        sample_identities(c, 1000, 0.0, np.random.default_rng(0), block=256, max_rounds=50, patience=5)


def test_twenty_thousand_identities_are_fast():
    """Blockwise matrix products, not a quadratic Python loop: 20k identities in 128-d in a few seconds.

    τ=0.35 here: at τ=0.3 an isotropic 128-d Gaussian is close to its random-packing limit for
    20k vectors (≈2M candidates needed), which takes tens of seconds on 2 cores.
    """
    rng = np.random.default_rng(0)
    c = rng.standard_normal((3000, 128))
    t = time.perf_counter()
    v = sample_identities(c, 20000, 0.35, rng)
    elapsed = time.perf_counter() - t
    assert v.shape == (20000, 128)
    worst = max(
        float(np.max(np.where(np.eye(len(blk), len(v), s, dtype=bool), -1, blk @ v.T)))
        for s in range(0, len(v), 5000)
        for blk in [v[s : s + 5000]]
    )
    assert worst <= 0.35 + 1e-5
    assert elapsed < 15
