import torch

from facefoundry.config import RenderCfg
from facefoundry.generators.render.pose_set import render_pose_set, train_pose_regressor
from facefoundry.identity.pose import PoseRegressor, pose_errors, sharpness_quality
from facefoundry.models.base import ConfigModule
from facefoundry.sampling import AttrOPTargets, attrop

TINY_RENDER = RenderCfg(mesh_lat=20, mesh_lon=28, supersample=1)


def test_pose_regressor_learns_yaw_and_round_trips(tmp_path):
    logs = []
    model = train_pose_regressor(
        TINY_RENDER, 32, n_images=768, steps=150, batch_size=32, width=8, seed=0, log=logs.append
    )
    images, angles = render_pose_set(384, seed=99, render=TINY_RENDER)  # held out: other faces, other poses
    err = pose_errors(model, images, angles)
    yaw_std = float(angles[:, 0].std())
    assert yaw_std > 12  # uniform on [-30, 30]
    assert err["yaw"] < 0.4 * yaw_std, (err, yaw_std)
    assert any("step 150/150" in line for line in logs)

    model.save_pretrained(tmp_path / "pose")
    again = ConfigModule.from_pretrained(tmp_path / "pose")
    assert isinstance(again, PoseRegressor) and again.config == model.config
    again.eval()
    with torch.no_grad():
        assert torch.allclose(again(images[:8]), model(images[:8]))
        big = torch.nn.functional.interpolate(images[:64], size=64, mode="bilinear", align_corners=False)
        assert (model.yaw(big) - angles[:64, 0]).abs().mean() < 0.5 * yaw_std  # any input size


def test_pose_regressor_is_differentiable():
    model = PoseRegressor(width=4).eval()
    x = torch.rand(2, 3, 48, 48, requires_grad=True)
    model.yaw(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_sharpness_quality_ranks_blur_and_drives_attrop():
    g = torch.Generator().manual_seed(0)
    sharp = torch.rand(4, 3, 32, 32, generator=g)
    blurred = torch.nn.functional.avg_pool2d(sharp, 3, 1, 1)
    assert (sharpness_quality(sharp) > sharpness_quality(blurred)).all()

    # AttrOP with the quality stand-in: raise sharpness of a toy decode until the hinge is met
    W = torch.randn(8, 3 * 16 * 16, generator=g) / 8**0.5

    def decode(v):
        return torch.sigmoid(v @ W).view(-1, 3, 16, 16)

    def encoder(img):
        x = img.clamp(1e-6, 1 - 1e-6).flatten(1)
        return torch.log(x / (1 - x)) @ torch.linalg.pinv(W)

    v0 = 0.3 * torch.randn(3, 8, generator=g)
    target = float(sharpness_quality(decode(v0)).max()) * 1.5
    r = attrop(
        v0,
        decode,
        encoder,
        AttrOPTargets(quality=target, quality_tolerance=0.01 * target),
        quality_fn=sharpness_quality,
        max_iters=200,
    )
    assert r.quality_met.all() and (r.identity >= 0.7).all()
