import numpy as np
import pytest

from facefoundry.errors import FaceFoundryError
from facefoundry.sampling import SIGMA_WEIGHTS, SIGMAS, perturb, sample_sigmas


def _centres(n, d, norm, seed=0):
    c = np.random.default_rng(seed).standard_normal((n, d))
    return c / np.linalg.norm(c, axis=1, keepdims=True) * norm


def test_sigma_mixture_proportions():
    s = sample_sigmas(20000, np.random.default_rng(0))
    for sigma, w in zip(SIGMAS, SIGMA_WEIGHTS):
        assert abs((s == sigma).mean() - w) < 0.015
    with pytest.raises(FaceFoundryError, match="one weight per σ"):
        sample_sigmas(5, np.random.default_rng(0), (0.1, 0.2), (1.0,))


def test_shapes_norms_and_per_dimension_sigma():
    c = _centres(50, 512, 25.0)
    r = perturb(c, 40, np.random.default_rng(1))
    assert r.vectors.shape == (2000, 512)
    assert np.array_equal(r.centre_index, np.repeat(np.arange(50), 40))
    assert np.allclose(np.linalg.norm(r.vectors, axis=1), 25.0, rtol=1e-5)
    # σ is per dimension: expected cos ≈ r / sqrt(r² + σ² D) (official sample_nearby_vectors)
    for sigma in SIGMAS:
        got = r.similarity[r.sigma == sigma].mean()
        assert abs(got - 25 / np.sqrt(25**2 + sigma**2 * 512)) < 0.01
    cos = (r.vectors * c[r.centre_index]).sum(1) / (25.0 * 25.0)
    assert np.allclose(cos, r.similarity, atol=1e-5)


def test_larger_sigma_lowers_similarity():
    c = _centres(20, 128, 1.0)
    means = [
        perturb(c, 200, np.random.default_rng(2), sigmas=(s,), weights=(1,)).similarity.mean()
        for s in (0.02, 0.05, 0.1)
    ]
    assert means[0] > means[1] > means[2]


def test_similarity_floor_holds_and_is_recorded():
    c = _centres(30, 128, 1.0)
    # σ=0.09 in 128-d: mean cos ≈ 0.70, so about half the first draws are below the 0.7 floor
    r = perturb(c, 100, np.random.default_rng(3), sigmas=(0.09,), weights=(1,), min_similarity=0.7, max_tries=3)
    assert (r.similarity >= 0.7 - 1e-9).all()
    assert (r.tries > 1).any() and r.tries.max() <= 3
    assert (r.shrink < 1).any() and (r.shrink[r.tries < 3] == 1).all()  # only the last-try rows are shrunk
    free = perturb(c, 100, np.random.default_rng(3), sigmas=(0.09,), weights=(1,))
    assert (free.similarity < 0.7).mean() > 0.3 and (free.tries == 1).all()


def test_reproducible():
    c = _centres(5, 16, 3.0)
    a = perturb(c, 4, np.random.default_rng(9), min_similarity=0.2)
    b = perturb(c, 4, np.random.default_rng(9), min_similarity=0.2)
    assert np.array_equal(a.vectors, b.vectors) and np.array_equal(a.sigma, b.sigma)
