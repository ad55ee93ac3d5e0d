"""Geometry codes (landmark PCA) as an optional Vec2Face input: estimator, mirror, model, training, generation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facefoundry.errors import FaceFoundryError
from facefoundry.generators.table import descriptor
from facefoundry.generators.vec2face.artifacts import GEOMETRY_PCA, fingerprint
from facefoundry.generators.vec2face.model import load_model_folder, save_model_folder
from facefoundry.generators.vec2face.training import train_vec2face
from facefoundry.identity.attributes import MIRROR_68, GeometryPCA, LandmarkEstimator, mirror, sample_codes
from tests.conftest import make_dataset, tiny_config
from tests.generators.vec2face import TinyEncoder, single_thread  # noqa: F401 - autouse fixture
from tests.generators.vec2face.test_generate import gen_cfg
from tests.generators.vec2face.test_model import tiny_model, unit
from tests.generators.vec2face.test_training import TINY_V2F

PHOTOS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "real_faces_unlabelled" / "ffhq256"


def test_mirror_is_an_involution_that_swaps_sides() -> None:
    assert sorted(MIRROR_68) == list(range(68)) and np.array_equal(MIRROR_68[MIRROR_68], np.arange(68))
    lm = np.random.default_rng(0).uniform(0, 1, (5, 68, 2))
    np.testing.assert_allclose(mirror(mirror(lm)), lm)
    m = mirror(lm)
    np.testing.assert_allclose(m[:, 36, 0], 1 - lm[:, 45, 0])  # outer eye corners change sides


def test_landmarks_of_a_flipped_face_are_the_mirrored_landmarks() -> None:
    """On a real aligned face (shared photos): dlib on the flipped crop ≈ ``mirror`` of dlib on the crop."""
    if not PHOTOS.is_dir():
        pytest.skip(f"shared real photos missing: {PHOTOS}")
    from facefoundry.data.images import read_image
    from facefoundry.identity.detect import FaceAligner

    aligner = FaceAligner(size=56)
    crops = [f.crop for f in (aligner.align(read_image(p)) for p in sorted(PHOTOS.glob("*.jpg"))[:6]) if f]
    assert len(crops) >= 4
    crops = np.stack(crops)
    est = LandmarkEstimator()
    lm, lm_flipped = est(crops), est(crops[:, :, ::-1].copy())
    err = np.abs(mirror(lm) - lm_flipped).mean()
    assert err < 0.02, err  # fractions of the crop side (a wrong left/right map is off by ≈ 0.1)


def test_pca_codes_are_whitened_and_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(0)
    lm = 0.5 + 0.05 * rng.standard_normal((200, 68, 2)) @ np.diag([1.0, 0.5])
    pca = GeometryPCA.fit(lm, 8)
    codes = pca.encode(lm)
    np.testing.assert_allclose(codes.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(codes.std(0, ddof=1), 1, atol=1e-4)
    full = GeometryPCA.fit(lm, 136)
    np.testing.assert_allclose(full.decode(full.encode(lm)), lm, atol=1e-5)
    pca.save(tmp_path / "g.npz")
    np.testing.assert_allclose(GeometryPCA.load(tmp_path / "g.npz").encode(lm), codes)
    with pytest.raises(FaceFoundryError, match="137 components"):
        GeometryPCA.fit(lm, 137)
    s = sample_codes(1000, 8, np.random.default_rng(1), scale=0.5, clip=2.0)
    assert s.shape == (1000, 8) and np.abs(s).max() <= 1.0 and 0.35 < s.std() < 0.5


def test_model_takes_geometry_codes_and_keeps_them_optional(tmp_path) -> None:
    model = tiny_model(attr_dim=4).eval()
    v = unit(3, 128)
    codes = torch.randn(3, 4)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    with_codes = model.generate(v, generator=g(), attributes=codes)
    assert not torch.allclose(with_codes, model.generate(v, generator=g()))
    assert torch.equal(model.generate(v, generator=g()), model.generate(v, generator=g(), attributes=torch.zeros(3, 4)))
    with pytest.raises(FaceFoundryError, match=r"attribute codes must be \[3, 4\]"):
        model(v, attributes=torch.zeros(3, 5))
    with pytest.raises(FaceFoundryError, match="takes no attribute codes"):
        tiny_model()(v, attributes=codes)
    save_model_folder(tmp_path / "m", model, None, {})
    loaded, _ = load_model_folder(tmp_path / "m")
    assert loaded.attr_dim == 4
    assert torch.equal(loaded.generate(v, generator=g(), attributes=codes), with_codes)


def test_training_with_geometry_then_each_image_gets_its_own_code(tmp_path) -> None:
    ds = make_dataset(tmp_path / "ds", identities=12, per_identity=2, size=32)
    cfg = tiny_config(tmp_path, base={"device": "cpu"}, vec2face={**TINY_V2F, "epochs": 1, "geometry_codes": 3})
    plain = tiny_config(tmp_path / "p", base={"device": "cpu"}, vec2face={**TINY_V2F, "epochs": 1})
    assert fingerprint(cfg, "d", {}) != fingerprint(plain, "d", {})
    # off, the option leaves a model's fingerprint what it was before the option existed
    dump = plain.vec2face.model_dump(mode="json")
    assert dump.pop("geometry_codes") == 0
    res = train_vec2face(cfg, ds, TinyEncoder(), tmp_path / "v2f", lambda m: None, progress=False)
    assert (res.model_dir / GEOMETRY_PCA).is_file()
    model, index = load_model_folder(res.model_dir)
    assert model.attr_dim == 3 and index["geometry_codes"] == 3
    assert list((tmp_path / "v2f" / "id_vectors").glob("landmarks_*.npy"))
    gcfg = gen_cfg(tmp_path, res.model_dir, "gen")
    out = Path(descriptor("vec2face").entry("generate")(gcfg, lambda m: None))
    from facefoundry.data.sources import open_source

    src = open_source(out)
    codes = np.array([json.loads(p)["geometry"] for p in src.manifest.params])
    assert codes.shape == (20, 3) and len({tuple(c) for c in codes}) == 20
    first = [src.load(i) for i in range(4)]  # identity 0, four codes: four different images
    assert all(not np.array_equal(first[0], im) for im in first[1:])
