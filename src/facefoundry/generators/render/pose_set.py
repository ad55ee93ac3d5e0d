"""AttrOP's pose-regressor training set: renders whose yaw, pitch and roll are known exactly.

The data maker lives with the renderer; the regressor itself and its fitting loop live in
:mod:`facefoundry.identity.pose`, which knows nothing of generators.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from facefoundry.config import Range, RenderCfg
from facefoundry.generators.render.generate import sample_identities
from facefoundry.generators.render.renderer import FaceRenderer
from facefoundry.identity.pose import ANGLES, PoseRegressor, fit_pose_regressor


def render_pose_set(
    n: int, seed: int, render: RenderCfg | None = None, image_size: int = 32, identities: int = 64, batch: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` renders (float [n, 3, S, S] in [0, 1]) of ``identities`` random faces and their true angles [n, 3]."""
    cfg = render or RenderCfg()
    renderer = FaceRenderer(cfg, image_size, "cpu")
    rng = np.random.default_rng([seed, 17])
    idents = sample_identities(identities, 0.0, seed)
    who = rng.integers(len(idents), size=n)
    var = renderer.sample_variations(n, rng)
    imgs = np.empty((n, image_size, image_size, 3), np.uint8)
    for s in range(0, n, batch):
        imgs[s : s + batch] = renderer.render([idents[i] for i in who[s : s + batch]], var[s : s + batch])[0]
    angles = torch.tensor([[v[a] for a in ANGLES] for v in var], dtype=torch.float32)
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255, angles


def train_pose_regressor(
    render: RenderCfg | None = None,
    image_size: int = 32,
    n_images: int = 2048,
    steps: int = 400,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    yaw_range: tuple[float, float] | None = None,
    width: int = 16,
    log: Callable[[str], None] = print,
) -> PoseRegressor:
    """Render ``n_images`` faces with known pose, train a :class:`PoseRegressor` on them for ``steps`` steps (CPU).

    ``yaw_range`` widens or narrows the renderer's yaw range (``render.yaw``) for training;
    the regressor is only trustworthy inside the range it saw. Returns the module in eval mode.
    """
    cfg = render or RenderCfg()
    if yaw_range is not None:
        cfg = cfg.model_copy(update={"yaw": Range(min=yaw_range[0], max=yaw_range[1])})
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    images, angles = render_pose_set(n_images, seed, cfg, image_size)
    log(f"pose regressor: rendered {n_images} images in {time.perf_counter() - t0:.1f}s")
    scale = max(abs(cfg.yaw.min), abs(cfg.yaw.max), 1.0)
    return fit_pose_regressor(
        images, angles, float(scale), steps=steps, batch_size=batch_size, lr=lr, seed=seed, width=width, log=log
    )
