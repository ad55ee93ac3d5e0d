"""Vec2Face generation: τ-separated identities, σ-mixture rows in the manifest, resumable writing, judges."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import facefoundry.identity as identity_pkg
from facefoundry.config import Vec2FaceGenCfg
from facefoundry.data.manifest import read_manifest
from facefoundry.data.writer import DatasetWriter
from facefoundry.generators.table import descriptor
from facefoundry.generators.vec2face import load_model_folder
from facefoundry.generators.vec2face.generate import (
    IdentitySpace,
    load_identity_space,
    new_identities,
    sigma_grid,
    sigma_study,
    variations,
)
from facefoundry.generators.vec2face.training import train_vec2face
from tests.conftest import make_dataset, tiny_config
from tests.generators.vec2face import TinyEncoder, single_thread  # noqa: F401 - autouse fixture
from tests.generators.vec2face.test_training import TINY_V2F


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("v2f")
    torch.set_num_threads(1)
    ds = make_dataset(tmp / "ds", identities=12, per_identity=2, size=32)
    cfg = tiny_config(tmp, base={"device": "cpu"}, vec2face={**TINY_V2F, "epochs": 1})
    return train_vec2face(cfg, ds, TinyEncoder(), tmp / "v2f", lambda m: None, progress=False).model_dir


def gen_cfg(tmp: Path, model_dir: Path, out: str, **v2f):
    return tiny_config(
        tmp,
        base={"device": "cpu"},
        identity={"judges": []},
        generate={
            "generator": "vec2face",
            "out": str(tmp / out),
            "identities": 5,
            "images_per_identity": 4,
            "batch_size": 6,
            "vec2face": {"model": str(model_dir), "judge_images": 0, "tau": 0.5, **v2f},
        },
    )


def test_model_folder_holds_the_training_identity_space(model_dir: Path) -> None:
    space = load_identity_space(model_dir, centred=True)
    assert space.photos.shape == (24, 128) and space.centres.shape == (12, 128)  # 12 labels of 2 photos
    np.testing.assert_allclose(np.linalg.norm(space.centres, axis=1), 1, atol=1e-6)


def test_new_identities_respect_tau_against_each_other_and_the_training_photos() -> None:
    rng = np.random.default_rng(0)
    common = rng.normal(size=64)
    photos = common + 0.4 * rng.normal(size=(300, 64))  # dlib-like: a large part shared by every face
    photos /= np.linalg.norm(photos, axis=1, keepdims=True)
    space = IdentitySpace(photos, np.arange(300), centred=True)
    g = Vec2FaceGenCfg(tau=0.3)
    new = new_identities(space, 40, g, np.random.default_rng(1))
    np.testing.assert_allclose(np.linalg.norm(new, axis=1), 1, atol=1e-5)
    d = space.to_space(new)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    cos = d @ d.T
    assert cos[~np.eye(40, dtype=bool)].max() <= 0.3 + 1e-6
    p = space.to_space(space.photos)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    assert (d @ p.T).max() <= 0.3 + 1e-6
    assert (new @ photos.T).max() > 0.5  # the raw cosine keeps the shared part: τ applies to the centred space


def test_variations_keep_the_papers_cosines_and_the_floor() -> None:
    rng = np.random.default_rng(2)
    photos = rng.normal(size=(50, 128))
    photos /= np.linalg.norm(photos, axis=1, keepdims=True)
    space = IdentitySpace(photos, np.arange(50), centred=False)
    g = Vec2FaceGenCfg(min_similarity=None)
    vecs, sigma, sim = variations(space, photos[:20], 200, g, rng)
    assert vecs.shape == (4000, 128)
    for s, w, expected in ((0.3, 0.4, 0.965), (0.5, 0.4, 0.911), (0.7, 0.2, 0.846)):  # r/√(r²+σ²·512), r=25
        assert abs((sigma == s).mean() - w) < 0.03
        assert abs(sim[sigma == s].mean() - expected) < 0.01
    floored = variations(
        space, photos[:20], 50, Vec2FaceGenCfg(sigmas=[3.0], sigma_weights=[1], min_similarity=0.6), rng
    )[2]
    assert floored.min() >= 0.6 - 1e-6


class Killed(Exception):
    pass


def test_generation_writes_sigma_tau_attrop_and_resumes_to_the_same_dataset(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(identity_pkg, "load_encoder", lambda spec: TinyEncoder())
    attrop = {"enabled": True, "yaw_targets": [], "max_iters": 3, "min_identity": 0.9999}
    cfg = gen_cfg(tmp_path, model_dir, "full", attrop=attrop)
    out = descriptor("vec2face").entry("generate")(cfg, lambda m: None)
    m = read_manifest(out)
    assert len(m) == 20 and sorted(set(m.label)) == [0, 1, 2, 3, 4]
    params = [json.loads(p) if isinstance(p, str) else p for p in m.params]
    assert {p["sigma"] for p in params} <= {0.3, 0.5, 0.7} and all(p["tau"] == 0.5 for p in params)
    assert all(p["similarity_to_centre"] >= 0.5 - 1e-6 for p in params)  # the default floor
    rec = params[0]["attrop"]
    assert rec["iterations"] <= 3 and "identity_reached" in rec and rec["converged"] in (True, False)
    assert m.meta["vec2face"]["tau"] == 0.5 and m.meta["generator"] == "vec2face"

    calls = {"n": 0}
    real_add = DatasetWriter.add

    def dying_add(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 9:  # dies in the second batch of 6
            raise Killed
        return real_add(self, *a, **kw)

    cfg2 = gen_cfg(tmp_path, model_dir, "resumed", attrop=attrop)
    monkeypatch.setattr(DatasetWriter, "add", dying_add)
    with pytest.raises(Killed):
        descriptor("vec2face").entry("generate")(cfg2, lambda m: None)
    monkeypatch.setattr(DatasetWriter, "add", real_add)
    assert (tmp_path / ".resumed.partial").is_dir() and not (tmp_path / "resumed").exists()
    logs: list[str] = []
    descriptor("vec2face").entry("generate")(cfg2, logs.append)
    assert any("resuming after 6" in s for s in logs)
    r = read_manifest(tmp_path / "resumed")
    assert r.sha256 == m.sha256 and r.path == m.path


def test_judges_see_one_vector_alike_and_sigma_study_shape(model_dir: Path) -> None:
    model, _ = load_model_folder(model_dir)
    space = load_identity_space(model_dir, centred=True)
    centres = new_identities(space, 4, Vec2FaceGenCfg(tau=0.9), np.random.default_rng(0))
    g = Vec2FaceGenCfg(judge_images=64)
    study = sigma_study(model, space, centres, g, {"tiny": TinyEncoder()}, torch.device("cpu"), seed=0)
    assert set(study) == {
        "judge_tiny_same_vector",
        "judge_tiny_different_vectors",
        "judge_tiny_intra_sigma_0.3",
        "judge_tiny_intra_sigma_0.5",
        "judge_tiny_intra_sigma_0.7",
    }
    assert study["judge_tiny_same_vector"] > study["judge_tiny_different_vectors"]
    grid = sigma_grid(model, space, centres, g, torch.device("cpu"), seed=0)
    assert len(grid) == 4 and all(len(row) == 4 for row in grid) and grid[0][0].shape == (32, 32, 3)


def test_identity_mixup_mixes_vectors_and_phi_one_changes_no_pixel(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SynFace identity mixup on Vec2Face: soft labels in the manifest; φ = 1 is the plain dataset."""
    monkeypatch.setattr(identity_pkg, "load_encoder", lambda spec: TinyEncoder())
    off = {"enabled": False}
    plain = read_manifest(
        descriptor("vec2face").entry("generate")(gen_cfg(tmp_path, model_dir, "plain", attrop=off), lambda m: None)
    )
    one = gen_cfg(tmp_path, model_dir, "one", attrop=off)
    one.generate.mixup.enabled, one.generate.mixup.phi = True, [1.0]
    assert read_manifest(descriptor("vec2face").entry("generate")(one, lambda m: None)).sha256 == plain.sha256
    mixed = gen_cfg(tmp_path, model_dir, "mixed", attrop=off)
    mixed.generate.mixup.enabled, mixed.generate.mixup.phi = True, [0.5]
    m = read_manifest(descriptor("vec2face").entry("generate")(mixed, lambda m: None))
    assert all(p != lab and 0 <= p < 5 for p, lab in zip(m.mix_label, m.label)) and set(m.mix_weight) == {0.5}
    assert m.meta["mixup"]["mixed_images"] == 20 and m.sha256 != plain.sha256
