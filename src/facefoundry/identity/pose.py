"""Default pose and quality estimators for AttrOP: a tiny yaw/pitch/roll CNN and a sharpness proxy.

The pose regressor is trained on the project's own renders, whose pose is known exactly
(:mod:`facefoundry.generators.render.pose_set` makes them), so no download or labelled photo set is needed. It is
a stand-in for a real head-pose network (the official Vec2Face AttrOP uses 6DRepNet): it
only knows the renderer's look and its pose range. It takes template-aligned RGB in [0, 1]
at any size and is differentiable, so AttrOP can push yaw through it.

:func:`sharpness_quality` stands in for the official quality term (MagFace feature norm),
which a unit-norm encoder cannot provide: the mean squared Laplacian of the grey image,
a differentiable blur/contrast measure, not a face-quality model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from facefoundry.models.base import ConfigModule, register_to_config
from facefoundry.progress import track

ANGLES = ("yaw", "pitch", "roll")


class PoseRegressor(ConfigModule):
    """images [B, 3, S, S] RGB in [0, 1] → angles [B, 3] (yaw, pitch, roll) in degrees."""

    @register_to_config
    def __init__(self, input_size: int = 32, width: int = 16, angle_scale: float = 30.0):
        super().__init__()
        w = width

        def block(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(i, o, 3, 1, 1, bias=False),
                nn.BatchNorm2d(o),
                nn.ReLU(inplace=True),
                nn.Conv2d(o, o, 3, 2, 1, bias=False),
                nn.BatchNorm2d(o),
                nn.ReLU(inplace=True),
            )

        self.features = nn.Sequential(block(3, w), block(w, 2 * w), block(2 * w, 4 * w))
        self.head = nn.Linear(4 * w * 16, len(ANGLES))
        self.input_size, self.angle_scale = input_size, angle_scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(
                x,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
                antialias=x.shape[-1] > self.input_size,
            )
        x = self.features(x * 2 - 1)
        x = F.adaptive_avg_pool2d(x, 4).flatten(1)
        return self.head(x) * self.angle_scale

    def yaw(self, images: torch.Tensor) -> torch.Tensor:
        """Yaw in degrees [B]: the ``pose_fn`` AttrOP expects."""
        return self(images)[:, 0]


@torch.no_grad()
def pose_errors(model: PoseRegressor, images: torch.Tensor, angles: torch.Tensor, batch: int = 256) -> dict[str, float]:
    """Mean absolute error in degrees per angle, e.g. ``{"yaw": 3.1, "pitch": ..., "roll": ...}``."""
    was = model.training
    model.eval()
    pred = torch.cat([model(images[s : s + batch]) for s in range(0, len(images), batch)])
    model.train(was)
    return {a: float((pred[:, k] - angles[:, k]).abs().mean()) for k, a in enumerate(ANGLES)}


def fit_pose_regressor(
    images: torch.Tensor,
    angles: torch.Tensor,
    angle_scale: float,
    steps: int = 400,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    width: int = 16,
    log: Callable[[str], None] = print,
) -> PoseRegressor:
    """Train a :class:`PoseRegressor` on ``images`` (float [N, 3, S, S] in [0, 1]) with known ``angles`` [N, 3].

    ``angle_scale`` (degrees) normalises the targets: the widest yaw the images show. Augmentation:
    horizontal flips (yaw and roll change sign). Seed torch's global generator first for a repeatable
    initialisation. Returns the module in eval mode; ``save_pretrained`` it.
    """
    image_size = images.shape[-1]
    scale = angle_scale
    model = PoseRegressor(input_size=image_size, width=width, angle_scale=float(scale))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.15)
    g = torch.Generator().manual_seed(seed)
    sign = torch.tensor([-1.0, 1.0, -1.0])
    model.train()
    for step in track(range(steps), desc="pose regressor", unit="step"):
        idx = torch.randint(len(images), (batch_size,), generator=g)
        x, y = images[idx], angles[idx]
        flip = torch.rand(batch_size, generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        y = torch.where(flip[:, None], y * sign, y)
        loss = F.smooth_l1_loss(model(x) / scale, y / scale, beta=0.05)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 100 == 0 or step + 1 == steps:
            log(f"pose regressor: step {step + 1}/{steps}, loss {loss.item():.4f}")
    return model.eval()


def sharpness_quality(images: torch.Tensor, scale: float = 100.0) -> torch.Tensor:
    """Differentiable image-quality stand-in [B]: ``scale`` × mean squared Laplacian of the grey image.

    Blur lowers it, detail and contrast raise it; it does not know faces. Images are RGB
    [B, 3, S, S] in [0, 1]; resolution changes its level, so set AttrOP quality targets on
    images of the size you will score.
    """
    grey = (images.float() * torch.tensor([0.299, 0.587, 0.114], device=images.device)[None, :, None, None]).sum(
        1, True
    )
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=images.device)[None, None]
    lap = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), k)
    return scale * lap.pow(2).mean((1, 2, 3))
