"""The learned nuisance code (``vec2face.nuisance_codes``): encoder, KL, training, saving, generation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from facefoundry.config import Vec2FaceCfg
from facefoundry.errors import FaceFoundryError
from facefoundry.generators.table import descriptor
from facefoundry.generators.vec2face.artifacts import fingerprint
from facefoundry.generators.vec2face.losses import LossWeights, Vec2FaceLoss
from facefoundry.generators.vec2face.model import MODEL_INDEX, load_model_folder
from facefoundry.generators.vec2face.nuisance import (
    NuisanceEncoder,
    code_statistics,
    free_bits_kl,
    kl_per_axis,
    kl_to_prior,
    nuisance_codes,
    reparameterise,
    swap_codes,
)
from facefoundry.generators.vec2face.training import train_vec2face
from facefoundry.models.base import ConfigModule
from tests.conftest import make_dataset, tiny_config
from tests.generators.vec2face import TinyEncoder, single_thread  # noqa: F401 - autouse fixture
from tests.generators.vec2face.test_generate import gen_cfg, model_dir  # noqa: F401 - fixture
from tests.generators.vec2face.test_training import TINY_V2F


def test_encoder_shapes_kl_and_reparameterisation() -> None:
    enc = NuisanceEncoder(dim=5, channels=8)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    mean, logvar = enc(x)
    assert mean.shape == logvar.shape == (4, 5)
    assert torch.allclose(logvar, torch.full_like(logvar, -6.0), atol=1.0)  # starts with little noise
    assert float(kl_to_prior(torch.zeros(3, 5), torch.zeros(3, 5))) == pytest.approx(0.0)
    # one axis with mean 2 and unit variance: KL = ½·2² = 2 nats
    assert float(kl_to_prior(torch.tensor([[2.0, 0.0]]), torch.zeros(1, 2))) == pytest.approx(2.0)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    assert torch.equal(reparameterise(mean, logvar, g()), reparameterise(mean, logvar, g()))
    assert torch.allclose(reparameterise(mean, torch.full_like(logvar, -30.0), g()), mean, atol=1e-5)
    z, kl, objective = nuisance_codes(enc, x, g())
    assert z.shape == (4, 5) and float(kl.detach()) > 0 and torch.equal(kl, objective)  # no free bits: the KL
    stats = code_statistics(torch.tensor([[0.0, 1.0, 5.0], [2.0, 1.0, 5.02]]))
    assert stats["nuisance_code_mean"] == [1.0, 1.0, 5.01] and stats["nuisance_active_axes"] == 1
    assert stats["nuisance_code_std"][0] == pytest.approx(2**0.5, abs=1e-5) and stats["nuisance_code_std"][1] == 0


def test_effective_axes_is_scale_free() -> None:
    """The participation ratio counts the directions a code spreads along whatever its scale (an autoencoder
    code of variance 1e-4 per axis has no "active" axis but all its effective ones), 1 for a rank-1 code and
    0 for a constant one."""
    iso = torch.randn(4000, 4, generator=torch.Generator().manual_seed(0))
    small = code_statistics(iso * 0.01)
    assert small["nuisance_active_axes"] == 0 and small["nuisance_effective_axes"] == pytest.approx(4, abs=0.1)
    assert code_statistics(iso)["nuisance_effective_axes"] == pytest.approx(small["nuisance_effective_axes"], abs=1e-3)
    assert code_statistics(iso[:, :1] * torch.tensor([[1.0, -2.0, 0.5, 3.0]]))[
        "nuisance_effective_axes"
    ] == pytest.approx(1.0, abs=1e-3)
    assert code_statistics(torch.ones(5, 4))["nuisance_effective_axes"] == 0.0


def test_config_takes_geometry_or_nuisance_not_both() -> None:
    with pytest.raises(ValidationError, match="set one"):
        Vec2FaceCfg(**TINY_V2F, geometry_codes=2, nuisance_codes=4)
    for key, value in (("nuisance_free_bits", 0.5), ("nuisance_swap_fraction", 0.25)):
        with pytest.raises(ValidationError, match="need nuisance_codes"):
            Vec2FaceCfg(**TINY_V2F, **{key: value})
    with pytest.raises(ValidationError):
        Vec2FaceCfg(**TINY_V2F, nuisance_codes=4, nuisance_swap_fraction=0.6)  # no row may keep its own code


def test_free_bits_floor_each_axis_and_stop_its_gradient() -> None:
    # axis 0: KL ½·2² = 2 nats (above a 1-nat floor); axis 1: ½·0.5² = 0.125 nats (below it)
    mean = torch.tensor([[2.0, 0.5]], requires_grad=True)
    logvar = torch.zeros(1, 2)
    assert kl_per_axis(mean, logvar).tolist() == pytest.approx([2.0, 0.125])
    assert float(free_bits_kl(mean, logvar, 0.0).detach()) == pytest.approx(2.125)
    objective = free_bits_kl(mean, logvar, 1.0)
    assert float(objective.detach()) == pytest.approx(3.0)  # 2 + the floor
    objective.backward()
    assert mean.grad[0, 0] == pytest.approx(2.0) and mean.grad[0, 1] == 0.0  # below the floor: not pushed to 0


def test_swap_codes_gives_the_last_rows_other_photos_codes() -> None:
    codes = torch.arange(8.0).view(8, 1)
    out = swap_codes(codes, 3)
    assert out.view(-1).tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    assert (out != codes).view(-1).tolist() == [False] * 5 + [True] * 3
    assert torch.equal(swap_codes(codes, 0), codes)
    with pytest.raises(FaceFoundryError, match="at least 10"):
        swap_codes(codes, 5)


def test_swapped_rows_have_no_reconstruction_target() -> None:
    loss = Vec2FaceLoss(TinyEncoder(dim=8), LossWeights())
    torch.manual_seed(0)
    gen, target = torch.rand(4, 3, 32, 32) * 2 - 1, torch.rand(4, 3, 32, 32) * 2 - 1
    ids, logits = torch.nn.functional.normalize(torch.randn(4, 8), dim=1), torch.randn(4, 5, 6)
    a = loss(gen, target, ids, logits, logits, reconstruct=3)
    other = target.clone()
    other[3] = -other[3]  # the swapped row's photo does not matter to the reconstruction terms
    b = loss(gen, other, ids, logits, logits, reconstruct=3)
    for key in ("mse", "perceptual", "ssim", "identity", "identity_swapped"):
        assert float(a[key]) == pytest.approx(float(b[key])), key
    full = loss(gen, target, ids, logits, logits)
    assert "identity_swapped" not in full and float(full["identity"]) == pytest.approx(float(a["identity"]))
    assert float(loss(gen, other, ids, logits, logits)["mse"]) != pytest.approx(float(a["mse"]))
    with pytest.raises(FaceFoundryError, match="reconstruct"):
        loss(gen, target, ids, logits, logits, reconstruct=0)


def test_training_learns_a_code_saves_its_encoder_and_generation_draws_one_per_image(tmp_path) -> None:
    ds = make_dataset(tmp_path / "ds", identities=12, per_identity=2, size=32)
    cfg = tiny_config(tmp_path, base={"device": "cpu"}, vec2face={**TINY_V2F, "epochs": 2, "nuisance_codes": 4})
    plain = tiny_config(tmp_path / "p", base={"device": "cpu"}, vec2face={**TINY_V2F, "epochs": 2})
    other_kl = tiny_config(
        tmp_path / "k",
        base={"device": "cpu"},
        vec2face={**TINY_V2F, "epochs": 2, "nuisance_codes": 4, "nuisance_kl_weight": 0.1},
    )
    assert len({fingerprint(c, "d", {}) for c in (cfg, plain, other_kl)}) == 3
    # off, the weight does not touch the fingerprint (models made before the option keep theirs)
    plain_kl = tiny_config(
        tmp_path / "q", base={"device": "cpu"}, vec2face={**TINY_V2F, "epochs": 2, "nuisance_kl_weight": 0.5}
    )
    assert fingerprint(plain, "d", {}) == fingerprint(plain_kl, "d", {})

    res = train_vec2face(cfg, ds, TinyEncoder(), tmp_path / "v2f", lambda m: None, progress=False)
    assert all("kl" in h and np.isfinite(h["kl"]) and h["kl"] > 0 for h in res.history)
    assert all("identity_swapped" not in h for h in res.history)

    # free bits and swapped codes: the objective counts every axis at ≥ its floor, a quarter of each batch is
    # judged by identity alone, and both change the fingerprint (off, they leave it as it was: asserted above)
    swap = tiny_config(
        tmp_path / "s",
        base={"device": "cpu"},
        vec2face={
            **TINY_V2F,
            "epochs": 1,
            "nuisance_codes": 4,
            "nuisance_free_bits": 0.5,
            "nuisance_swap_fraction": 0.25,
        },
    )
    assert fingerprint(swap, "d", {}) != fingerprint(
        tiny_config(tmp_path / "s2", base={"device": "cpu"}, vec2face={**TINY_V2F, "epochs": 1, "nuisance_codes": 4}),
        "d",
        {},
    )
    hist = train_vec2face(swap, ds, TinyEncoder(), tmp_path / "v2f_s", lambda m: None, progress=False).history
    assert hist[0]["kl_objective"] >= 4 * 0.5 - 1e-6 and 0 < hist[0]["identity_swapped"] < 2
    model, index = load_model_folder(res.model_dir)
    assert model.attr_dim == 4 and index["nuisance_codes"] == 4 and index["nuisance_encoder"] == "nuisance_encoder"
    assert 0 <= index["nuisance_active_axes"] <= 4 and len(index["nuisance_code_std"]) == 4
    enc = ConfigModule.from_pretrained(res.model_dir / "nuisance_encoder")
    assert isinstance(enc, NuisanceEncoder) and enc.dim == 4
    assert json.loads((res.model_dir / MODEL_INDEX).read_text())["generator"] == "generator"

    # a run killed after epoch 1 resumes to the uninterrupted run's weights, the nuisance encoder's included
    part = train_vec2face(cfg, ds, TinyEncoder(), tmp_path / "v2f_b", lambda m: None, stop_after=1, progress=False)
    assert len(part.history) == 1
    again = train_vec2face(cfg, ds, TinyEncoder(), tmp_path / "v2f_b", lambda m: None, progress=False)
    assert again.resumed_from == 1
    enc_b = ConfigModule.from_pretrained(again.model_dir / "nuisance_encoder")
    for (k, a), (_, b) in zip(enc.state_dict().items(), enc_b.state_dict().items()):
        assert torch.equal(a, b), k
    out = Path(descriptor("vec2face").entry("generate")(gen_cfg(tmp_path, res.model_dir, "gen"), lambda m: None))
    from facefoundry.data.sources import open_source

    src = open_source(out)
    params = [json.loads(p) for p in src.manifest.params]
    assert all("geometry" not in p for p in params)
    codes = np.array([p["nuisance"] for p in params])
    assert codes.shape == (20, 4) and len({tuple(c) for c in codes}) == 20
    # drawn from the training photos' aggregate posterior: centred on its mean, within 2.5 of its std per axis
    lo = np.array(index["nuisance_code_mean"]) - 2.5 * np.array(index["nuisance_code_std"]) - 1e-3
    hi = np.array(index["nuisance_code_mean"]) + 2.5 * np.array(index["nuisance_code_std"]) + 1e-3
    assert ((codes >= lo) & (codes <= hi)).all()
    first = [src.load(i) for i in range(4)]  # identity 0, four codes: four different images
    assert all(not np.array_equal(first[0], im) for im in first[1:])

    # "bank": every image borrows one training photo's code (the model folder keeps them), recorded per image
    bank = np.load(res.model_dir / "nuisance_codes.npy")
    assert bank.shape == (24, 4) and np.isfinite(bank).all()
    out_b = Path(
        descriptor("vec2face").entry("generate")(
            gen_cfg(tmp_path, res.model_dir, "gen_b", nuisance_sampling="bank"), lambda m: None
        )
    )
    params_b = [json.loads(p) for p in open_source(out_b).manifest.params]
    photos = np.array([p["nuisance_photo"] for p in params_b])
    assert ((photos >= 0) & (photos < 24)).all() and len(set(photos.tolist())) > 1
    np.testing.assert_allclose([p["nuisance"] for p in params_b], bank[photos], atol=1e-3)
    (res.model_dir / "nuisance_codes.npy").unlink()  # a folder without its codes: one clear line
    with pytest.raises(FaceFoundryError, match=r"nuisance_codes\.npy: missing"):
        descriptor("vec2face").entry("generate")(
            gen_cfg(tmp_path, res.model_dir, "gen_c", nuisance_sampling="bank"), lambda m: None
        )


def test_bank_sampling_needs_a_nuisance_model(request: pytest.FixtureRequest, tmp_path) -> None:
    plain_model = request.getfixturevalue("model_dir")  # a model trained without nuisance codes
    with pytest.raises(FaceFoundryError, match=r"needs a model trained with vec2face\.nuisance_codes"):
        descriptor("vec2face").entry("generate")(
            gen_cfg(tmp_path, plain_model, "g", nuisance_sampling="bank"), lambda m: None
        )
