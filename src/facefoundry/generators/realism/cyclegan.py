"""CycleGAN-style unpaired translation (Zhu et al., 2017), sized for small aligned faces.

ResNet generator (c7s1-w, two stride-2 downs, R residual blocks, two upsample+conv ups, c7s1-3 + tanh),
70×70-style PatchGAN discriminator, least-squares GAN loss, cycle-consistency
``λ_cycle·|G_BA(G_AB(a)) − a|₁`` and identity ``λ_identity·|G_AB(b) − b|₁`` terms. No
identity labels or pretrained FR model are involved.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facefoundry.io import atomic_write_json
from facefoundry.models.base import ConfigModule, register_to_config
from facefoundry.progress import track

INDEX = "facefoundry_realism.json"


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(c, c, 3),
            nn.InstanceNorm2d(c),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(c, c, 3),
            nn.InstanceNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(ConfigModule):
    weights_name = "generator.pth"

    @register_to_config
    def __init__(self, width: int = 32, blocks: int = 3):
        super().__init__()
        w = width
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, w, 7), nn.InstanceNorm2d(w), nn.ReLU(True)]
        for m in (1, 2):
            layers += [nn.Conv2d(w * m, w * m * 2, 3, 2, 1), nn.InstanceNorm2d(w * m * 2), nn.ReLU(True)]
        layers += [_Res(w * 4) for _ in range(blocks)]
        for m in (4, 2):  # resize-then-convolve: no checkerboard artefacts of transposed convolutions
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(w * m, w * m // 2, 3, 1, 1),
                nn.InstanceNorm2d(w * m // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, 3, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator(ConfigModule):
    weights_name = "discriminator.pth"

    @register_to_config
    def __init__(self, width: int = 32, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        c = width
        for i in range(1, layers):
            mods += [
                nn.Conv2d(c, c * 2, 4, 2 if i < layers - 1 else 1, 1),
                nn.InstanceNorm2d(c * 2),
                nn.LeakyReLU(0.2, True),
            ]
            c *= 2
        mods += [nn.Conv2d(c, 1, 4, 1, 1)]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CycleGANTranslator:
    """Rendered (A) → photo (B) translator; ``strength`` blends output with the input."""

    method = "cyclegan"

    def __init__(self, g_ab: ResnetGenerator, strength: float = 1.0):
        self.g_ab, self.strength = g_ab.eval(), strength

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (1 - self.strength) * x + self.strength * self.g_ab(x)


def train_cyclegan(
    a: torch.Tensor,
    b: torch.Tensor,
    steps: int,
    batch: int,
    lr: float,
    lambda_cycle: float,
    lambda_identity: float,
    width: int,
    blocks: int,
    seed: int,
    device: torch.device,
    out: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, nn.Module]:
    """Train on two unpaired image sets (float NCHW in [-1, 1]); returns the four networks."""
    torch.manual_seed(seed)
    nets = {
        "generator_ab": ResnetGenerator(width, blocks),
        "generator_ba": ResnetGenerator(width, blocks),
        "discriminator_a": PatchDiscriminator(width),
        "discriminator_b": PatchDiscriminator(width),
    }
    for n in nets.values():
        n.to(device).train()
    g_ab, g_ba, d_a, d_b = (nets[k] for k in ("generator_ab", "generator_ba", "discriminator_a", "discriminator_b"))
    opt_g = torch.optim.Adam(itertools.chain(g_ab.parameters(), g_ba.parameters()), lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(itertools.chain(d_a.parameters(), d_b.parameters()), lr, betas=(0.5, 0.999))
    rng = np.random.default_rng(seed)
    mse = nn.MSELoss()
    t0 = time.perf_counter()
    for step in track(range(1, steps + 1), desc="cyclegan", unit="step"):
        ra = a[rng.integers(len(a), size=batch)].to(device)
        rb = b[rng.integers(len(b), size=batch)].to(device)
        fake_b, fake_a = g_ab(ra), g_ba(rb)
        pred_fb, pred_fa = d_b(fake_b), d_a(fake_a)
        loss_gan = mse(pred_fb, torch.ones_like(pred_fb)) + mse(pred_fa, torch.ones_like(pred_fa))
        loss_cyc = F.l1_loss(g_ba(fake_b), ra) + F.l1_loss(g_ab(fake_a), rb)
        loss_id = F.l1_loss(g_ab(rb), rb) + F.l1_loss(g_ba(ra), ra)
        loss_g = loss_gan + lambda_cycle * loss_cyc + lambda_identity * loss_id
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        loss_d: torch.Tensor | float = 0.0
        for d, real, fake in ((d_b, rb, fake_b), (d_a, ra, fake_a)):
            pr, pf = d(real), d(fake.detach())
            loss_d = loss_d + 0.5 * (mse(pr, torch.ones_like(pr)) + mse(pf, torch.zeros_like(pf)))
        opt_d.zero_grad(set_to_none=True)
        assert isinstance(loss_d, torch.Tensor)  # both discriminators' terms were added to it
        loss_d.backward()
        opt_d.step()
        if step % 50 == 0 or step == steps:
            shown_g, shown_gan, shown_cyc, shown_id, shown_d = (
                float(v.detach()) for v in (loss_g, loss_gan, loss_cyc, loss_id, loss_d)
            )
            rate = step / (time.perf_counter() - t0)
            log(
                f"cyclegan step {step}/{steps}: G {shown_g:.3f} (gan {shown_gan:.3f} cycle {shown_cyc:.3f} "
                f"id {shown_id:.3f}) D {shown_d:.3f}, {rate:.1f} steps/s"
            )
    for n in nets.values():
        n.eval()
    if out is not None:
        for name, n in nets.items():
            n.save_pretrained(Path(out) / name)
        atomic_write_json(Path(out) / INDEX, {"method": "cyclegan", **{k: type(v).__name__ for k, v in nets.items()}})
    return nets
