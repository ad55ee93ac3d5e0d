"""DDIM inversion with a diffusion model trained on the target photos.

A diffusers ``UNet2DModel`` learns the target domain (ε-prediction, DDPM schedule).
A rendered face is inverted deterministically with ``DDIMInverseScheduler`` up to
``strength × T`` and denoised back with ``DDIMScheduler``: the deeper the inversion,
the more the target prior replaces rendered appearance (strength = realism).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facefoundry.generators.realism.cyclegan import INDEX
from facefoundry.io import atomic_write_json
from facefoundry.progress import track


def build_unet(size: int, width: int):
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=size,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(width, width * 2, width * 2),
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )


def train_ddim(
    b: torch.Tensor,
    steps: int,
    batch: int,
    lr: float,
    width: int,
    seed: int,
    device: torch.device,
    out: Path | None = None,
    log: Callable[[str], None] = print,
):
    """Fit a small ε-prediction UNet to the target images (float NCHW in [-1, 1])."""
    from diffusers import DDPMScheduler

    torch.manual_seed(seed)
    unet = build_unet(b.shape[-1], width).to(device).train()
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    opt = torch.optim.AdamW(unet.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for step in track(range(1, steps + 1), desc="ddim unet", unit="step"):
        x0 = b[rng.integers(len(b), size=batch)].to(device)
        x0 = torch.where(torch.rand(batch, 1, 1, 1, device=device) < 0.5, x0, x0.flip(-1))
        noise = torch.randn_like(x0)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,), device=device)
        loss = F.mse_loss(unet(sched.add_noise(x0, noise, t), t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps:
            log(
                f"ddim unet step {step}/{steps}: loss {float(loss.detach()):.4f}, {step / (time.perf_counter() - t0):.1f} steps/s"
            )
    unet.eval()
    if out is not None:
        unet.save_pretrained(str(Path(out) / "unet"))
        sched.save_pretrained(str(Path(out) / "scheduler"))
        atomic_write_json(Path(out) / INDEX, {"method": "ddim", "unet": "UNet2DModel", "scheduler": "DDPMScheduler"})
    return unet, sched


class DDIMTranslator:
    method = "ddim"

    def __init__(self, unet, train_scheduler_config: dict, steps: int, strength: float):
        from diffusers import DDIMInverseScheduler, DDIMScheduler

        self.unet, self.strength, self.steps = unet, strength, steps
        self.fwd = DDIMScheduler.from_config(train_scheduler_config)
        self.inv = DDIMInverseScheduler.from_config(train_scheduler_config)
        self.fwd.set_timesteps(steps)
        self.inv.set_timesteps(steps)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        depth = round(self.strength * self.steps)
        if depth == 0:
            return x
        for t in self.inv.timesteps[:depth]:  # x_0 → x_t, deterministic
            x = self.inv.step(self.unet(x, t).sample, t, x).prev_sample
        for t in self.fwd.timesteps[self.steps - depth :]:  # x_t → x_0 under the target prior
            x = self.fwd.step(self.unet(x, t).sample, t, x, eta=0.0).prev_sample
        return x.clamp(-1, 1)
