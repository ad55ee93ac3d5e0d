"""IDSync generation: PCA identities and intra-class noise, exact counts, seeds, resume after a kill."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facefoundry.data.manifest import read_manifest
from facefoundry.data.writer import DatasetWriter
from facefoundry.generators.idsync.generate import identity_pca, sample_vectors
from facefoundry.generators.idsync.model import conditioning_space
from facefoundry.generators.idsync.training import train_idsync
from facefoundry.generators.table import descriptor
from tests.conftest import make_dataset, tiny_config
from tests.generators.idsync import ID_DIM, TINY_IDSYNC
from tests.generators.vec2face import TinyEncoder, single_thread  # noqa: F401 - autouse fixture


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("idsync")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    ds = make_dataset(tmp / "ds", identities=6, per_identity=4, size=16)
    cfg = tiny_config(
        tmp,
        base={"device": "cpu"},
        idsync={**TINY_IDSYNC, "epochs": 1, "identity_weight": 0.0, "out": str(tmp / "idsync")},
    )
    out = train_idsync(cfg, ds, TinyEncoder(ID_DIM), log=lambda m: None, progress=False).model_dir
    torch.set_num_threads(n)
    return out


def gen_cfg(tmp: Path, model_dir: Path, out: str, seed: int = 7):
    return tiny_config(
        tmp,
        base={"device": "cpu", "seed": seed},
        identity={"judges": []},
        generate={
            "generator": "idsync",
            "out": str(tmp / out),
            "identities": 5,
            "images_per_identity": 3,
            "batch_size": 4,
            "idsync": {"model": str(model_dir), "steps": 3, "guidance": 3.0, "noise_variance": 0.001},
        },
    )


def test_centring_removes_the_part_every_face_shares() -> None:
    rng = np.random.default_rng(3)
    common = rng.normal(size=128)
    photos = common + 0.45 * rng.normal(size=(500, 128))  # different people ≈ 0.83 apart, as dlib's are
    photos /= np.linalg.norm(photos, axis=1, keepdims=True)
    raw = photos @ photos.T
    u = conditioning_space(photos, photos.mean(0))
    cen = u @ u.T
    off = ~np.eye(500, dtype=bool)
    assert raw[off].mean() > 0.75 and abs(cen[off].mean()) < 0.05
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1, atol=1e-5)


def test_pca_identities_are_unit_and_noise_keeps_the_expected_cosine() -> None:
    rng = np.random.default_rng(0)
    photos = rng.normal(size=(400, 128))
    photos /= np.linalg.norm(photos, axis=1, keepdims=True)
    pca = identity_pca(photos, 300)
    assert len(pca.variances_) == 128  # 300 asked, capped by the dimension
    centres, vecs = sample_vectors(pca, 50, 40, 0.001, np.random.default_rng(1), np.random.default_rng(2))
    assert centres.shape == (50, 128) and vecs.shape == (2000, 128)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    cos = (vecs * np.repeat(centres, 40, 0)).sum(1)
    assert abs(cos.mean() - 1 / np.sqrt(1 + 0.001 * 128)) < 0.005  # σ² per dimension on a unit centre


class Killed(Exception):
    pass


def test_generation_counts_seeds_meta_and_resume(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = descriptor("idsync").entry("generate")
    m = read_manifest(gen(gen_cfg(tmp_path, model_dir, "a"), lambda s: None))
    assert len(m) == 15 and [m.label.count(c) for c in range(5)] == [3] * 5  # exactly N × per, not batch²
    for key, want in (
        ("identity_weight", 0.0),
        ("noise_variance", 0.001),
        ("steps", 3),
        ("guidance", 3.0),
        ("seed", 7),
        ("generator", "idsync"),
    ):
        assert m.meta[key] == want, key
    assert "identity_loss" in m.meta and m.meta["image_size"] == 16
    assert m.meta["centre_vectors"] is True and (model_dir / "id_mean.npy").is_file()  # dlib-like spaces: centred
    again = read_manifest(gen(gen_cfg(tmp_path, model_dir, "b"), lambda s: None))
    assert again.sha256 == m.sha256  # same seed, same pixels
    other = read_manifest(gen(gen_cfg(tmp_path, model_dir, "c", seed=8), lambda s: None))
    assert other.sha256 != m.sha256

    calls = {"n": 0}
    real_add = DatasetWriter.add

    def dying_add(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 7:  # dies in the second batch of 4
            raise Killed
        return real_add(self, *a, **kw)

    monkeypatch.setattr(DatasetWriter, "add", dying_add)
    with pytest.raises(Killed):
        gen(gen_cfg(tmp_path, model_dir, "resumed"), lambda s: None)
    monkeypatch.setattr(DatasetWriter, "add", real_add)
    assert (tmp_path / ".resumed.partial").is_dir() and not (tmp_path / "resumed").exists()
    logs: list[str] = []
    gen(gen_cfg(tmp_path, model_dir, "resumed"), logs.append)
    assert any("resuming after 4" in s for s in logs)
    r = read_manifest(tmp_path / "resumed")
    assert r.sha256 == m.sha256 and r.path == m.path


def test_identity_mixup_records_soft_labels_and_phi_one_changes_no_pixel(tmp_path: Path, model_dir: Path) -> None:
    gen = descriptor("idsync").entry("generate")
    plain = read_manifest(gen(gen_cfg(tmp_path, model_dir, "plain"), lambda s: None))
    one = gen_cfg(tmp_path, model_dir, "one")
    one.generate.mixup.enabled, one.generate.mixup.phi = True, [1.0]
    assert read_manifest(gen(one, lambda s: None)).sha256 == plain.sha256
    mixed = gen_cfg(tmp_path, model_dir, "mixed")
    mixed.generate.mixup.enabled, mixed.generate.mixup.phi = True, [0.3]
    m = read_manifest(gen(mixed, lambda s: None))
    assert all(p != lab and 0 <= p < 5 for p, lab in zip(m.mix_label, m.label)) and set(m.mix_weight) == {0.3}
    assert m.meta["mixup"]["mixed_images"] == 15 and m.sha256 != plain.sha256
