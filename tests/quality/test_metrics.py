"""Data-quality metrics on data the tests make themselves (seeded numpy)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from facefoundry.quality import metrics
from facefoundry.quality.metrics import (
    centre_space,
    density_coverage,
    frechet_distance,
    identity_centres,
    js_divergence,
    kernel_mmd,
    leakage,
    mislabelled,
    near_duplicates,
    phash,
    pose_summary,
    separability,
)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _clusters(
    rng: np.random.Generator, n_ids: int = 6, per_id: int = 10, dim: int = 32, noise: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors around orthonormal centres e_0..e_{n_ids-1}: (emb, labels, centres)."""
    centres = np.eye(dim)[:n_ids]
    labels = np.repeat(np.arange(n_ids), per_id)
    emb = _unit(centres[labels] + noise * rng.standard_normal((len(labels), dim)))
    return emb, labels, centres


# --- identity space -------------------------------------------------------------------------------------


def test_centre_space_unit_rows_zero_stays_zero() -> None:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((20, 8)) + 3.0
    out, mean = centre_space(emb)
    np.testing.assert_allclose(mean, emb.mean(0))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0)
    out2, mean2 = centre_space(emb[:3], mean=emb[0])
    assert np.array_equal(mean2, emb[0])
    assert np.all(out2[0] == 0) and not np.isnan(out2).any()
    np.testing.assert_allclose(out2[1], _unit(emb[1] - emb[0]))


def test_identity_centres_sorted_labels_and_unit_means() -> None:
    emb = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 1.0]])
    labels = np.array([7, 3, 3, 7])
    centres, uniq = identity_centres(emb, labels)
    assert uniq.tolist() == [3, 7]
    assert centres.dtype == np.float64
    np.testing.assert_allclose(centres, [[0.0, 1.0], _unit(np.array([3.0, 1.0]))])


def test_separability_counts_close_pairs() -> None:
    rng = np.random.default_rng(1)
    dim = 16
    centres = list(np.eye(dim)[:5])
    twin = _unit(centres[0] + 0.05 * rng.standard_normal(dim))  # nearly identical to centre 0
    centres.append(twin)
    centres.append(_unit(np.eye(dim)[6] + 0.3 * np.eye(dim)[1]))  # cos ≈ 0.29 to centre 1: still separable
    out = separability(np.array(centres), threshold=0.4)
    assert out["separable_identities"] == 5  # all but centre 0 and its twin
    assert out["separability"] == pytest.approx(5 / 7)
    assert out["max_similarity"].shape == (7,)
    assert out["max_similarity"][0] > 0.9 and out["max_similarity"][5] > 0.9
    assert abs(out["max_similarity"][2]) < 0.1  # only the twin's noise
    assert out["max_similarity"][6] == pytest.approx(0.3 / np.sqrt(1.09))
    one = separability(np.eye(4)[:1])
    assert one["separable_identities"] == 1 and one["max_similarity"].tolist() == [-1.0]


def test_mislabelled_clean_set_flags_nothing() -> None:
    emb, labels, _ = _clusters(np.random.default_rng(2))
    out = mislabelled(emb, labels)
    assert out["images"].size == 0 and out["identities"].size == 0 and out["fraction"] == 0.0
    assert out["nearest"].shape == (len(emb),)
    assert not np.any(out["nearest"] == labels)


def test_mislabelled_finds_the_misplaced_image() -> None:
    rng = np.random.default_rng(3)
    emb, labels, centres = _clusters(rng)
    bad = 4  # an image of class 0 ...
    assert labels[bad] == 0
    emb[bad] = _unit(centres[3] + 0.05 * rng.standard_normal(emb.shape[1]))  # ... that shows person 3
    out = mislabelled(emb, labels)
    assert out["images"].tolist() == [bad]
    assert out["fraction"] == pytest.approx(1 / len(emb))
    assert out["nearest"][bad] == 3
    assert out["identities"].size == 0  # 1 of 10 images is below min_share


def test_mislabelled_lists_a_class_of_two_people() -> None:
    rng = np.random.default_rng(4)
    emb, labels, centres = _clusters(rng, n_ids=5)
    # class 5 mixes person 1 and person 2: every image is closer to the pure class than to its own
    mixed = _unit(np.repeat(centres[[1, 2]], 4, axis=0) + 0.05 * rng.standard_normal((8, emb.shape[1])))
    emb = np.concatenate([emb, mixed])
    labels = np.concatenate([labels, np.full(8, 5)])
    out = mislabelled(emb, labels)
    assert out["identities"].tolist() == [5]
    assert set(out["images"].tolist()) == set(range(50, 58))
    assert out["nearest"][50:54].tolist() == [1] * 4 and out["nearest"][54:].tolist() == [2] * 4


def test_mislabelled_singletons_never_flagged_and_blocks_agree() -> None:
    rng = np.random.default_rng(5)
    emb, labels, centres = _clusters(rng)
    emb = np.concatenate([emb, _unit(centres[2:3] + 0.01)])  # a singleton class sitting on person 2
    labels = np.concatenate([labels, [99]])
    out = mislabelled(emb, labels)
    assert 60 not in out["images"].tolist()
    assert out["nearest"][60] == 2
    # string labels work too
    out_s = mislabelled(emb, labels.astype(str))
    assert out_s["images"].tolist() == out["images"].tolist()


def test_mislabelled_uses_leave_one_out_centres() -> None:
    rng = np.random.default_rng(13)
    emb, labels, centres = _clusters(rng)
    # class 7: one image of person 0 and one of person 3. Against the full centre (which contains the
    # image itself) each has cos ≈ 0.7; left out, its own centre is the other image (cos ≈ 0)
    pair = _unit(centres[[0, 3]] + 0.05 * rng.standard_normal((2, emb.shape[1])))
    emb = np.concatenate([emb, pair])
    labels = np.concatenate([labels, [7, 7]])
    out = mislabelled(emb, labels, margin=0.5)
    assert out["images"].tolist() == [60, 61]
    assert out["identities"].tolist() == [7]
    assert out["nearest"][60:].tolist() == [0, 3]


def test_blocked_results_match_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(14)
    emb, labels, _ = _clusters(rng, n_ids=12, per_id=8, noise=0.1)
    emb[5] = emb[70]  # one misplaced image
    centres, _ = identity_centres(emb, labels)
    reference = _unit(rng.standard_normal((50, emb.shape[1])))
    hashes = rng.integers(0, 2**63, 40, dtype=np.int64).astype(np.uint64)
    hashes[[3, 17, 30]] = hashes[9] ^ np.array([1, 2, 4], dtype=np.uint64)

    def run() -> tuple:
        return (
            mislabelled(emb, labels),
            separability(centres),
            leakage(centres, reference, 0.3),
            density_coverage(emb[:60], emb[40:], k=3),
            near_duplicates(hashes),
        )

    whole = run()
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", 7)  # a few rows per block
    blocked = run()
    for key in ("images", "identities", "nearest"):
        assert np.array_equal(whole[0][key], blocked[0][key])
    assert whole[0]["images"].tolist() == [5]
    np.testing.assert_allclose(whole[1]["max_similarity"], blocked[1]["max_similarity"])
    np.testing.assert_allclose(whole[2]["max_similarity"], blocked[2]["max_similarity"])
    assert np.array_equal(whole[2]["nearest"], blocked[2]["nearest"])
    assert whole[3] == pytest.approx(blocked[3])
    assert whole[4] == blocked[4] == [[3, 9, 17, 30]]


def test_leakage_lists_the_copied_centre() -> None:
    rng = np.random.default_rng(6)
    reference = _unit(rng.standard_normal((200, 64)))
    centres = _unit(rng.standard_normal((30, 64)))
    centres[7] = _unit(reference[123] + 0.01 * rng.standard_normal(64))
    out = leakage(centres, reference, threshold=0.7)
    assert out["identities"].tolist() == [7]
    assert out["nearest"][7] == 123
    assert out["max_similarity"][7] > 0.99
    assert np.all(np.delete(out["max_similarity"], 7) < 0.7)
    empty = leakage(centres, np.zeros((0, 64)), threshold=0.7)
    assert empty["identities"].size == 0 and np.all(empty["max_similarity"] == -1.0)


# --- distribution distances -----------------------------------------------------------------------------


def test_frechet_distance_self_closed_form_symmetry_and_shift() -> None:
    rng = np.random.default_rng(7)
    a = rng.standard_normal((3000, 4)) * [1.0, 2.0, 0.5, 3.0]
    assert frechet_distance(a, a) < 1e-6 * np.trace(np.cov(a, rowvar=False))
    # closed form for diagonal covariances: ‖Δμ‖² + Σ (σa − σb)², on exact moments
    b = rng.standard_normal((3000, 4))
    b = (b - b.mean(0)) / b.std(0, ddof=1)  # exact zero mean, unit variance, near-zero correlations
    a = b * [1.0, 2.0, 0.5, 3.0] + [1.0, 0.0, 0.0, 0.0]
    c = b * [2.0, 2.0, 1.0, 1.0] + [0.0, 2.0, 0.0, 0.0]
    expected = (1 + 4) + (1 + 0 + 0.25 + 4)
    assert frechet_distance(a, c) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(c, a) == pytest.approx(frechet_distance(a, c), rel=1e-9)
    x = rng.standard_normal((500, 8))
    y = rng.standard_normal((500, 8))
    d0, d1, d2 = (frechet_distance(x, y + s) for s in (0.0, 0.5, 2.0))
    assert d0 < d1 < d2
    assert d2 == pytest.approx(32.0 + d0, rel=0.1)  # ‖(2, …, 2)‖² = 32
    with pytest.raises(ValueError, match="at least 2 rows"):
        frechet_distance(x[:1], y)


def test_kernel_mmd_same_vs_shifted() -> None:
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((1000, 16)), rng.standard_normal((1000, 16))
    same = kernel_mmd(a, b)
    shifted = kernel_mmd(a, b + 1.0)
    assert abs(same) < 0.01
    assert shifted > 0.5 and shifted > 50 * abs(same)
    assert kernel_mmd(a, b, max_samples=300) == kernel_mmd(a, b, max_samples=300)  # seeded subsample
    assert isinstance(same, float)


def test_density_coverage_self_independent_and_far() -> None:
    rng = np.random.default_rng(9)
    real = rng.standard_normal((800, 8))
    density, coverage = density_coverage(real, real, k=5)
    assert coverage == 1.0
    assert density == pytest.approx(6 / 5)  # each ball holds itself and its 5 neighbours
    other = rng.standard_normal((800, 8))
    density, coverage = density_coverage(real, other, k=5)
    assert density == pytest.approx(1.0, abs=0.1) and coverage > 0.95
    assert density_coverage(real, other + 100.0, k=5) == (0.0, 0.0)
    # a fake set that collapsed onto one mode covers little of the real one
    _, coverage = density_coverage(real, 0.1 * other[:100], k=5)
    assert coverage < 0.3


def test_js_divergence_bounds_and_symmetry() -> None:
    rng = np.random.default_rng(10)
    a, b = rng.normal(0, 1, 5000), rng.normal(1, 1, 5000)
    assert js_divergence(a, a) == 0.0
    assert js_divergence(a, a + 100.0) == pytest.approx(1.0)
    d_ab, d_ba = js_divergence(a, b), js_divergence(b, a)
    assert d_ab == pytest.approx(d_ba) and 0.05 < d_ab < 0.5
    assert js_divergence(a, rng.normal(0, 1, 5000)) < 0.02


# --- perceptual hash ------------------------------------------------------------------------------------


def _smooth_image(rng: np.random.Generator, size: int = 112) -> np.ndarray:
    low = rng.random((8, 8, 3)) * 255.0
    big = ndimage.zoom(low, (size / 8, size / 8, 1), order=3)
    return np.clip(big, 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray, quality: int = 90) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _bits(x: np.uint64, y: np.uint64) -> int:
    return bin(int(x) ^ int(y)).count("1")


def test_phash_robust_to_reencoding_and_separates_images() -> None:
    rng = np.random.default_rng(11)
    imgs = [_smooth_image(rng) for _ in range(6)]
    base = imgs[0]
    variants = [
        _jpeg(base),
        ndimage.gaussian_filter(base, sigma=(0.8, 0.8, 0)),
        np.clip(base.astype(int) + 8, 0, 255).astype(np.uint8),
    ]
    hashes = phash(np.stack([base, *variants, *imgs[1:]]))
    assert hashes.dtype == np.uint64 and hashes.shape == (9,)
    for v in hashes[1:4]:
        assert _bits(hashes[0], v) <= 4
    others = hashes[4:]
    for i in range(len(others)):
        assert _bits(hashes[0], others[i]) > 16
        for j in range(i + 1, len(others)):
            assert _bits(others[i], others[j]) > 16
    # any image size: the 32×32 area resize handles non-multiples of 32
    odd = _smooth_image(rng, size=75)
    assert _bits(*phash(np.stack([odd, _jpeg(odd)]))) <= 4


def test_near_duplicates_groups_copies_only() -> None:
    rng = np.random.default_rng(12)
    a, b, c, d = (_smooth_image(rng) for _ in range(4))
    batch = np.stack([a, b, _jpeg(a), c, _jpeg(c), d, _jpeg(_jpeg(a), 80)])
    groups = near_duplicates(phash(batch), max_bits=4)
    assert groups == [[0, 2, 6], [3, 4]]
    # chains are joined (connected components) and the bit threshold is inclusive
    h = np.array([0b0, 0b1111, 0b1111_1111, 0xFFFF << 40], dtype=np.uint64)
    assert near_duplicates(h, max_bits=4) == [[0, 1, 2]]
    assert near_duplicates(h, max_bits=3) == []
    assert near_duplicates(np.zeros(0, dtype=np.uint64)) == []


# --- pose -----------------------------------------------------------------------------------------------


def test_pose_summary_ignores_nan_and_omits_empty_keys() -> None:
    poses = {
        "yaw": np.array([-40.0, 10.0, np.nan, 20.0, 50.0]),
        "pitch": np.array([0.0, np.nan, 5.0, -5.0, 0.0]),
        "roll": np.full(5, np.nan),
    }
    out = pose_summary(poses)
    assert out["yaw_mean"] == pytest.approx(10.0)
    assert out["yaw_std"] == pytest.approx(np.std([-40.0, 10.0, 20.0, 50.0]))
    assert (out["yaw_min"], out["yaw_max"]) == (-40.0, 50.0)
    assert out["yaw_abs_gt_30"] == pytest.approx(0.5)
    assert out["pitch_abs_gt_30"] == 0.0 and out["pitch_mean"] == 0.0
    assert not any(k.startswith("roll") for k in out)
    assert 0.0 < out["yaw_entropy"] <= 1.0
    assert pose_summary({"yaw": np.zeros(10)})["yaw_entropy"] == 0.0
