"""Vec2Face network, masking and losses: shapes, mask statistics, gradients, persistence."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from facefoundry.errors import FaceFoundryError
from facefoundry.generators.vec2face import (
    GENERATE_MASKING,
    TRAIN_MASKING,
    LossWeights,
    MaskRatioSampler,
    PatchDiscriminator,
    Vec2Face,
    Vec2FaceLoss,
    load_model_folder,
    row_masks,
    save_model_folder,
    ssim,
)
from facefoundry.generators.vec2face.training import train_step
from tests.generators.vec2face import TinyEncoder, single_thread  # noqa: F401 - autouse fixture

GEOMETRY = {32: (8, [1, 1, 2, 2]), 56: (8, [1, 1, 2, 2]), 112: (16, [1, 1, 2, 2, 4])}


def tiny_model(size: int = 32, id_dim: int = 128, **kw) -> Vec2Face:
    patch, mults = GEOMETRY[size]
    args = {
        "id_dim": id_dim,
        "image_size": size,
        "patch": patch,
        "width": 32,
        "depth": 1,
        "heads": 2,
        "decoder_depth": 1,
        "decoder_heads": 2,
        "decoder_channels": 8,
        "decoder_multipliers": mults,
        "z_channels": 16,
    }
    return Vec2Face(**{**args, **kw})


def unit(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.mark.parametrize("size", [32, 56, 112])
@pytest.mark.parametrize("id_dim", [128, 512])
def test_shapes(size: int, id_dim: int) -> None:
    torch.manual_seed(0)
    model = tiny_model(size, id_dim)
    out = model(unit(2, id_dim), images=torch.zeros(2, 3, size, size))
    rows = (size // GEOMETRY[size][0]) ** 2
    assert out.images.shape == (2, 3, size, size)
    assert out.logits.shape == out.tokens.shape == (2, rows, 32)
    assert out.masks.masked.shape == (2, rows)
    gen = model.generate(unit(3, id_dim), generator=torch.Generator().manual_seed(0))
    assert gen.shape == (3, 3, size, size) and gen.min() >= -1 and gen.max() <= 1


def test_bad_geometry_and_inputs_are_one_line_errors() -> None:
    with pytest.raises(FaceFoundryError, match="decoder_multipliers"):
        tiny_model(32, decoder_multipliers=[1, 2])
    with pytest.raises(FaceFoundryError, match="heads"):
        tiny_model(32, heads=3)
    model = tiny_model(32)
    with pytest.raises(FaceFoundryError, match="128"):
        model(unit(2, 64))
    with pytest.raises(FaceFoundryError, match="target images"):
        model(unit(2, 128), images=torch.zeros(2, 3, 56, 56))


@pytest.mark.parametrize("sampler", [TRAIN_MASKING, GENERATE_MASKING])
def test_mask_ratio_sampler_respects_min_and_mean(sampler: MaskRatioSampler) -> None:
    r = sampler.sample(20000, torch.Generator().manual_seed(0))
    assert r.min() >= sampler.min and r.max() <= sampler.max
    assert abs(float(r.mean()) - sampler.expected()) < 0.01
    if sampler is TRAIN_MASKING:  # symmetric truncation: the mean stays the configured mean
        assert abs(float(r.mean()) - sampler.mean) < 0.01
    else:  # the lower bound sits near the mode, so the realised mean is above it
        assert float(r.mean()) > sampler.mean


def test_row_masks_counts_and_nesting() -> None:
    m = row_masks(5, 49, 0.8, 0.5, torch.Generator().manual_seed(1))
    assert (m.masked.sum(1) == math.ceil(49 * 0.8)).all()
    assert (m.dropped.sum(1) == math.ceil(49 * 0.5)).all()
    assert not (m.dropped & ~m.masked).any()  # dropped ⊆ masked
    assert m.kept.shape == (5, 49 - 25)
    assert not m.dropped.gather(1, m.kept).any()
    assert (m.kept.diff(dim=1) > 0).all()


def test_ssim_identity_and_range() -> None:
    x = torch.rand(2, 3, 32, 32)
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-5)
    assert float(ssim(x, torch.rand(2, 3, 32, 32))) < 0.2


@pytest.mark.parametrize("with_features", [True, False])
def test_every_loss_term_present_and_finite(with_features: bool) -> None:
    torch.manual_seed(0)
    enc = TinyEncoder(with_features=with_features)
    loss = Vec2FaceLoss(enc, LossWeights())
    assert loss.perceptual_source == ("encoder" if with_features else "random_conv")
    model, disc = tiny_model(32), PatchDiscriminator(dims=[8, 16, 32])
    target = torch.rand(4, 3, 32, 32) * 2 - 1
    vec = enc((target + 1) / 2).detach()
    out = model(vec, target)
    terms = loss(out.images, target, vec, out.logits, out.tokens, disc, model.last_layer)
    for k in ("mse", "perceptual", "ssim", "token", "identity", "nll", "gan", "gan_weight", "total"):
        assert k in terms and torch.isfinite(terms[k]), k
    d = loss.discriminator_loss(disc, target, out.images)
    assert torch.isfinite(d)


def test_identity_loss_backpropagates_to_the_generator() -> None:
    torch.manual_seed(0)
    enc = TinyEncoder()
    loss = Vec2FaceLoss(enc)
    model = tiny_model(32)
    vec = unit(3, 128)
    out = model(vec)
    terms = loss(out.images, torch.zeros_like(out.images), vec, out.logits, out.tokens)
    terms["identity"].backward()
    for p in (
        model.id_proj.weight,
        model.feature_token.weight,
        model.blocks[0].attn.qkv.weight,
        model.im_decoder.conv_out.weight,
    ):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.parameters())  # the encoder stays frozen


def test_reconstruction_loss_falls_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    enc = TinyEncoder()
    model, disc = tiny_model(32, dropout=0.0), PatchDiscriminator(dims=[8, 16, 32])
    loss = Vec2FaceLoss(enc)
    target = torch.rand(4, 3, 32, 32) * 2 - 1
    target = F.avg_pool2d(target, 5, 1, 2)  # smooth images, learnable in a few steps
    vec = enc((target + 1) / 2).detach()
    opt_g = torch.optim.Adam(model.parameters(), 2e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    mse = [train_step(model, disc, loss, target, vec, opt_g, None, scaler, grad_clip=2.0)["mse"] for _ in range(30)]
    assert sum(mse[-3:]) / 3 < 0.6 * sum(mse[:3]) / 3, mse


def test_save_load_round_trip_gives_identical_outputs(tmp_path) -> None:
    torch.manual_seed(0)
    model, disc = tiny_model(56, 512), PatchDiscriminator(dims=[8, 16])
    save_model_folder(tmp_path / "model", model.eval(), disc, {"encoder": {"name": "tiny"}})
    loaded, index = load_model_folder(tmp_path / "model")
    assert index["encoder"] == {"name": "tiny"} and (tmp_path / "model" / "discriminator").is_dir()
    assert loaded.config == {
        **model.config,
        "decoder_multipliers": list(model.config["decoder_multipliers"]),
        "train_mask": list(model.config["train_mask"]),
        "generate_mask": list(model.config["generate_mask"]),
    }
    vec = unit(3, 512)
    a = model.generate(vec, generator=torch.Generator().manual_seed(5))
    b = loaded.generate(vec, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    with pytest.raises(FaceFoundryError, match=r"vec2face_model\.json"):
        load_model_folder(tmp_path)


def test_standardised_inputs_use_the_training_statistics_and_are_saved(tmp_path) -> None:
    torch.manual_seed(0)
    common = torch.nn.functional.normalize(torch.randn(1, 512), dim=1)
    vectors = torch.nn.functional.normalize(3 * common + 0.3 * torch.randn(40, 512), dim=1)  # dlib-like
    model = Vec2Face(**{**tiny_model(56, 512).config, "standardise_inputs": True})
    model.set_input_stats(vectors)
    x = (vectors - model.id_mean) * model.id_scale
    assert torch.allclose(x.mean(0), torch.zeros(512), atol=1e-6)
    assert abs(float(x.norm(dim=1).mean()) - 1.0) < 1e-5
    save_model_folder(tmp_path / "m", model.eval(), None, {})
    loaded, _ = load_model_folder(tmp_path / "m")
    assert torch.equal(loaded.id_mean, model.id_mean) and loaded.standardise_inputs
    g = torch.Generator().manual_seed(1)
    assert torch.equal(
        model.generate(vectors[:2], generator=g),
        loaded.generate(vectors[:2], generator=torch.Generator().manual_seed(1)),
    )
