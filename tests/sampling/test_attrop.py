import time

import numpy as np
import pytest
import torch

from facefoundry.errors import FaceFoundryError
from facefoundry.sampling import AttrOPTargets, attrop

D, S = 16, 8


def _toy(max_yaw: float = 60.0):
    """A differentiable toy 'generator': vector → 8×8 image, encoder inverts it, yaw = left/right imbalance."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(D, 3 * S * S, generator=g) / D**0.5
    P = torch.linalg.pinv(W)

    def decode(v):
        return torch.sigmoid(v @ W).view(-1, 3, S, S)

    def encoder(img):
        x = img.clamp(1e-6, 1 - 1e-6).flatten(1)
        return torch.log(x / (1 - x)) @ P

    def pose_fn(img):
        return max_yaw * torch.tanh(4 * (img[..., S // 2 :].mean((1, 2, 3)) - img[..., : S // 2].mean((1, 2, 3))))

    return decode, encoder, pose_fn


def test_attrop_moves_yaw_to_its_target_and_keeps_identity():
    decode, encoder, pose_fn = _toy()
    v0 = torch.randn(6, D, generator=torch.Generator().manual_seed(1))
    start = pose_fn(decode(v0)).abs()
    r = attrop(v0, decode, encoder, AttrOPTargets(yaw=25.0), pose_fn=pose_fn, max_iters=200)
    assert r.converged.all(), (r.yaw, r.identity)
    assert (np.abs(np.abs(r.yaw) - 25) <= 5).all()
    assert (np.abs(np.abs(r.yaw) - 25) < np.abs(start.numpy() - 25)).all()
    assert (r.identity >= 0.7).all() and (r.iterations > 0).all() and (r.iterations < 200).all()
    # the recorded numbers are those of the returned vectors/images
    assert np.allclose(pose_fn(decode(r.vectors)).detach().numpy(), r.yaw, atol=1e-4)
    assert np.allclose(pose_fn(r.images).detach().numpy(), r.yaw, atol=1e-4)


def test_impossible_target_stops_at_budget_and_says_so():
    decode, encoder, pose_fn = _toy(max_yaw=30.0)  # this 'pose network' never exceeds 30°
    v0 = torch.randn(4, D, generator=torch.Generator().manual_seed(2))
    t = time.perf_counter()
    r = attrop(v0, decode, encoder, AttrOPTargets(yaw=80.0), pose_fn=pose_fn, max_iters=40)
    assert time.perf_counter() - t < 10
    assert (r.iterations == 40).all()
    assert not r.yaw_met.any() and not r.converged.any()
    assert (np.abs(r.yaw) > np.abs(pose_fn(decode(v0)).detach().numpy())).all()  # it did try


def test_vectors_meeting_targets_are_frozen():
    decode, encoder, _ = _toy()
    v0 = torch.randn(3, D, generator=torch.Generator().manual_seed(3))
    r = attrop(v0, decode, encoder, AttrOPTargets(), max_iters=10)  # identity only: met at the start
    assert (r.iterations == 0).all() and r.converged.all()
    assert torch.equal(r.vectors, v0) and np.isnan(r.yaw).all() and np.isnan(r.quality).all()


def test_quality_hinge_and_explicit_identity():
    decode, encoder, _ = _toy()
    v0 = torch.randn(4, D, generator=torch.Generator().manual_seed(4))

    def contrast(img):
        return 10 * img.std((1, 2, 3))

    q0 = contrast(decode(v0)).detach()
    target = float(q0.max()) + 0.5
    r = attrop(
        v0,
        decode,
        encoder,
        AttrOPTargets(quality=target, quality_tolerance=0.1),
        identity=v0,
        quality_fn=contrast,
        max_iters=300,
    )
    assert r.quality_met.all() and (r.quality >= target - 0.1).all()
    assert (r.identity >= 0.7).all()


def test_missing_estimator_is_a_user_error():
    decode, encoder, _ = _toy()
    with pytest.raises(FaceFoundryError, match="pose_fn"):
        attrop(torch.zeros(1, D), decode, encoder, AttrOPTargets(yaw=10))
    with pytest.raises(FaceFoundryError, match="quality_fn"):
        attrop(torch.zeros(1, D), decode, encoder, AttrOPTargets(quality=1))
