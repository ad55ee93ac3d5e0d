import numpy as np
import pytest
import torch

from facefoundry.config import RenderCfg
from facefoundry.data.manifest import read_manifest
from facefoundry.errors import FaceFoundryError
from facefoundry.generators.render.generate import generate_render, generate_twin_benchmark, sample_identities
from facefoundry.generators.render.head import IDENTITY
from facefoundry.generators.render.raster import rasterize
from facefoundry.generators.render.renderer import FaceRenderer
from facefoundry.generators.sampling import perturb, sample_separated
from facefoundry.identity.template import similarity_fit, template
from facefoundry.verification.binfile import read_bin

SMALL = {"mesh_lat": 20, "mesh_lon": 28, "supersample": 1}


def quiet(_):
    pass


def test_rasterizer_depth_test_and_coverage():
    # two overlapping squares (two triangles each); the nearer (z=1) must win where they overlap
    def square(x0, x1, z):
        return [[x0, x0, z], [x0, x1, z], [x1, x1, z], [x1, x0, z]]

    verts = torch.tensor([square(0, 6, 2.0) + square(3, 8, 1.0)], dtype=torch.float32)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    fid, bary, mask = rasterize(verts, faces, 8, 8)
    assert mask[0, 1, 1] and not mask[0, 7, 0]
    assert fid[0, 4, 4] >= 2  # overlap region: the nearer square
    assert fid[0, 1, 1] < 2
    assert torch.allclose(bary[mask].sum(-1), torch.ones(int(mask.sum())))


def test_similarity_fit_recovers_transform():
    src = torch.rand(3, 5, 2) * 50
    ang, s, t = 0.3, 1.7, torch.tensor([4.0, -2.0])
    R = s * torch.tensor([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]], dtype=torch.float32)
    A, tt = similarity_fit(src, src @ R.T + t)
    assert torch.allclose(A, R.expand(3, 2, 2), atol=1e-4) and torch.allclose(tt, t.expand(3, 2), atol=1e-3)


def test_same_seed_same_images_and_different_seed_differs():
    r = FaceRenderer(RenderCfg(**SMALL), 32)
    ids = sample_identities(2, 0.3, seed=1)
    v1 = r.sample_variations(2, np.random.default_rng(3))
    a, _ = r.render(ids, v1)
    b, _ = r.render(ids, r.sample_variations(2, np.random.default_rng(3)))
    c, _ = r.render(ids, r.sample_variations(2, np.random.default_rng(4)))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_landmarks_land_on_template_for_near_frontal_faces():
    cfg = RenderCfg(**SMALL, yaw=[-5, 5], pitch=[-5, 5], roll=[-10, 10])
    r = FaceRenderer(cfg, 112)
    ids = sample_identities(8, 0.3, seed=2)
    _, lms = r.render(ids, r.sample_variations(8, np.random.default_rng(0)))
    err = np.linalg.norm(lms - template(112).numpy(), axis=-1)  # pixels, per landmark
    # identities differ in proportions (as real faces do), so the best similarity leaves a residual
    assert err.mean() < 3.0 and err.max() < 8.0, (err.mean(), err.max())
    assert np.abs((lms - template(112).numpy()).mean(0)).max() < 1.5  # no systematic bias


def test_landmarks_match_rendered_features():
    # the pixel under each projected eye landmark is darker/different from the cheek skin below it
    r = FaceRenderer(
        RenderCfg(
            **SMALL,
            yaw=[0, 0],
            pitch=[0, 0],
            roll=[0, 0],
            blur_sigma=[0, 0],
            noise_std=[0, 0],
            jpeg_prob=0,
            glasses_prob=0,
            hat_prob=0,
            eye_closure=[0, 0],
        ),
        112,
    )
    img, lms = r.render(sample_identities(1, 0.3, seed=3), r.sample_variations(1, np.random.default_rng(0)))
    for x, y in lms[0][:2]:
        eye, cheek = img[0, round(y), round(x)].astype(int), img[0, round(y) + 12, round(x)].astype(int)
        assert np.abs(eye - cheek).sum() > 40


def test_dataset_manifest_keeps_identity_fixed_and_variation_free(tmp_path, tiny):
    out = generate_render(tiny, quiet)
    m = read_manifest(out)
    assert len(m) == 6 * 4 and m.num_classes == 6
    by_label: dict[int, list[dict]] = {}
    for i, lab in enumerate(m.label):
        by_label.setdefault(lab, []).append(m.row_params(i))
    for rows in by_label.values():
        assert all(r["identity"] == rows[0]["identity"] for r in rows)  # identity fixed → same label
        assert len({r["variation"]["yaw"] for r in rows}) == len(rows)  # variation changes
        assert set(rows[0]["identity"]) == set(IDENTITY) and len(IDENTITY) >= 40
        assert len(rows[0]["landmarks"]) == 5
    again = generate_render(tiny, quiet)
    assert read_manifest(again).sha256 == m.sha256  # deterministic per seed


def test_twin_benchmark(tmp_path, tiny):
    path = generate_twin_benchmark(tiny, quiet)
    ps = read_bin(path, 32)
    assert len(ps.issame) == 40 and ps.issame.sum() == 20


def test_identities_are_separated_and_twins_at_distance():
    rng = np.random.default_rng(0)
    pts = sample_separated(50, 46, 0.5, rng)
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1) / np.sqrt(46)
    assert d[~np.eye(50, dtype=bool)].min() >= 0.5
    tw = perturb(pts[:5], 0.2, rng)
    assert np.all(np.linalg.norm(tw - pts[:5], axis=1) / np.sqrt(46) <= 0.2 + 1e-9)
    with pytest.raises(FaceFoundryError, match="could not place identity"):
        sample_separated(10, 2, 1.5, rng)


def test_interrupted_generation_resumes_to_identical_dataset(tmp_path, tiny, monkeypatch):
    from facefoundry.config import load_config

    cfg = load_config(tmp_path / "params.yaml", sets=["generate.batch_size=8"])
    reference = read_manifest(generate_render(cfg, quiet)).sha256
    import shutil

    shutil.rmtree(cfg.generate.out)
    calls = {"n": 0}
    real = FaceRenderer.render

    def crash_on_third(self, ids, var):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, ids, var)

    monkeypatch.setattr(FaceRenderer, "render", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        generate_render(cfg, quiet)
    assert not (tmp_path / "render").exists()  # nothing half-written at the output path
    monkeypatch.setattr(FaceRenderer, "render", real)
    logs = []
    out = generate_render(cfg, logs.append)
    assert any("resuming after 16 finished images" in m for m in logs)
    assert read_manifest(out).sha256 == reference
    assert not (tmp_path / ".render.partial").exists()


def _weights_after_training(cfg):
    from facefoundry.train.trainer import Trainer

    t = Trainer(cfg, log=quiet)
    t.fit()
    return {k: v.clone() for k, v in t.net.state_dict().items()}


def test_identity_mixup_phi_one_equals_no_mixup_bit_for_bit(tmp_path):
    from tests.conftest import tiny_config

    train = {"epochs": 1, "batch_size": 8}
    plain = tiny_config(tmp_path / "a", generate={"identities": 4}, train=train)
    one = tiny_config(tmp_path / "b", generate={"identities": 4, "mixup": {"enabled": True, "phi": [1.0]}}, train=train)
    a, b = read_manifest(generate_render(plain, quiet)), read_manifest(generate_render(one, quiet))
    assert a.sha256 == b.sha256 and not b.has_soft_labels
    wa, wb = _weights_after_training(plain), _weights_after_training(one)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_identity_mixup_mixes_parameters_and_records_soft_labels(tmp_path):
    from tests.conftest import tiny_config

    cfg = tiny_config(tmp_path, generate={"identities": 4, "mixup": {"enabled": True, "phi": [0.6, 1.0]}})
    m = read_manifest(generate_render(cfg, quiet))
    mixed = [i for i in range(len(m)) if m.mix_label[i] >= 0]
    assert mixed and len(mixed) < len(m) and m.meta["mixup"]["phi"] == [0.6, 1.0]
    for i in range(len(m)):
        rec = m.row_params(i)["mixup"]
        assert rec["partner"] == m.mix_label[i] and rec["phi"] == m.mix_weight[i]
        assert m.mix_label[i] != m.label[i] and m.mix_weight[i] in (0.6, 1.0)
    plain = read_manifest(generate_render(tiny_config(tmp_path / "p", generate={"identities": 4}), quiet))
    same = [plain.sha256[i] == m.sha256[i] for i in range(len(m))]
    assert not any(same[i] for i in mixed) and all(same[i] for i in range(len(m)) if i not in mixed)


def test_dataset_shapes_long_tail_fixed_total_and_attribute_control(tmp_path):
    from facefoundry.config import GenerateCfg
    from facefoundry.generators.render.generate import FACTORS
    from tests.conftest import tiny_config

    assert GenerateCfg(identities=10, identity_groups=[2, 2, 6, 40, 200]).image_counts() == [
        2,
        2,
        2,
        2,
        6,
        6,
        40,
        40,
        200,
        200,
    ]
    assert GenerateCfg(identities=25, total_images=1600).image_counts() == [64] * 25
    with pytest.raises(ValueError, match="do not split into 5 equal"):
        GenerateCfg(identities=12, identity_groups=[2, 2, 6, 40, 200])
    cfg = tiny_config(tmp_path, generate={"identities": 4, "identity_groups": [2, 5], "vary": "pose"})
    m = read_manifest(generate_render(cfg, quiet))
    assert np.bincount(m.label).tolist() == [2, 2, 5, 5]
    rows = [m.row_params(i)["variation"] for i in range(len(m))]
    for name in rows[0]:
        values = {str(r[name]) for r in rows}
        assert (len(values) > 1) == (name in FACTORS["pose"]), name
