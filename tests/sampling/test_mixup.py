import numpy as np
import pytest

from facefoundry.errors import FaceFoundryError
from facefoundry.sampling.mixup import OFFICIAL, draw_partners, is_identity, mix_vectors, ratio_grid


def test_phi_grids_match_the_paper_and_the_official_code():
    assert len(OFFICIAL) == 21 and OFFICIAL[0] == 0 and OFFICIAL[-1] == 1.0
    assert np.allclose(np.diff(OFFICIAL), 0.05)  # linspace(0, 1.05, 21, endpoint=False)
    assert ratio_grid("syn1").tolist() == [1.0] and ratio_grid("syn2").tolist() == [0.8]
    syn3 = ratio_grid("syn3")
    assert len(syn3) == 11 and syn3[0] == 0.6 and syn3[-1] == 1.0
    assert ratio_grid([0.7, 1.0]).tolist() == [0.7, 1.0]
    assert is_identity("syn1") and is_identity([1.0, 1.0]) and not is_identity("official")
    with pytest.raises(FaceFoundryError, match="unknown mixup ratio set 'syn9'"):
        ratio_grid("syn9")
    with pytest.raises(FaceFoundryError, match="within \\[0, 1\\]"):
        ratio_grid([0.5, 1.2])


def test_partners_differ_from_own_identity_and_phi_one_has_none():
    labels = np.repeat(np.arange(10), 6)
    mix = draw_partners(labels, 10, OFFICIAL, np.random.default_rng(0))
    assert np.all(mix.partner != labels)
    for i in range(10):  # without replacement while there are enough other identities (official code)
        p = mix.partner[labels == i]
        drawn = mix.phi[labels == i] < 1
        assert len(set(p[drawn])) == drawn.sum()
    assert np.all((mix.phi == 1.0) == (mix.partner == -1))
    assert set(np.round(mix.phi, 3)) <= set(OFFICIAL)
    many = draw_partners(np.repeat(np.arange(50), 40), 50, OFFICIAL, np.random.default_rng(1))
    counts = np.bincount(np.round(many.phi / 0.05).astype(int), minlength=21) / len(many.phi)
    assert np.all(np.abs(counts - 1 / 21) < 0.02)  # φ uniform over the grid
    with pytest.raises(FaceFoundryError, match="at least 2 identities"):
        draw_partners(np.zeros(4, int), 1, OFFICIAL, np.random.default_rng(0))


def test_mixed_vectors_are_convex_and_renormalised_unmixed_rows_untouched():
    rng = np.random.default_rng(3)
    v, p = rng.normal(size=(200, 16)), rng.normal(size=(200, 16)) * 3
    mix = draw_partners(np.repeat(np.arange(20), 10), 20, OFFICIAL, rng)
    out = mix_vectors(v, p, mix, renormalise=True)
    assert np.allclose(np.linalg.norm(out, axis=1), np.linalg.norm(v, axis=1))
    keep = ~mix.mixed
    assert np.array_equal(out[keep], v[keep])
    box = mix_vectors(v, p, mix, renormalise=False)
    j = int(np.flatnonzero(mix.mixed)[0])
    assert np.allclose(box[j], mix.phi[j] * v[j] + (1 - mix.phi[j]) * p[j])
