"""Vec2Face's training objective, weightless (the networks it reads are frozen or passed in).

Generator total (paper §3, official ``VQLPIPSWithDiscriminator``)::

    mse·‖x̂−x‖² + perceptual·P(x̂,x) + ssim·(1−SSIM(x̂,x)) + token·‖t̂−t‖² + identity·(1−cos(E(x̂), v))
      + λ_gan·LSGAN_G(D(x̂))            (only from vec2face.disc_start_epoch)

- ``P``: the paper uses LPIPS (VGG, weighted ×0.1×2). LPIPS weights cannot be had here, so ``P`` is
  an LPIPS-style distance — channel-unit-normalised feature maps, squared difference summed over
  channels, averaged over space and over layers (so its scale does not grow with depth) — on the
  **identity encoder's own intermediate layers** when it exposes ``features(images) -> list[Tensor]``
  (dlib does), else on a fixed
  random-init conv net (:class:`RandomConvFeatures`; random features are a known usable
  perceptual metric, and the net is seeded so the loss is the same in every run).
- ``SSIM``: 11-tap Gaussian window, σ 1.5, on ``[0,1]`` images (pytorch_msssim's defaults).
- ``t̂, t``: decoded feature tokens vs the unmasked feature map; ``v``: the image's identity vector,
  ``E``: the frozen identity encoder on ``(x̂+1)/2``.
- ``λ_gan``: ``gan_weight``, times the VQGAN adaptive ratio ‖∇nll‖/‖∇G‖ at the image decoder's last
  layer when ``adaptive_gan_weight`` (the official setting). The paper's generator term is −D(x̂);
  here both sides are least-squares (LSGAN): D: ½[(D(x)−1)² + D(x̂)²], G: (D(x̂)−1)².
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from facefoundry.errors import FaceFoundryError
from facefoundry.identity.base import IdentityEncoder

# -- SSIM ----------------------------------------------------------------------------------------


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """A normalised 1-D Gaussian ``[size]``."""
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of two ``[B,C,H,W]`` batches (separable Gaussian window, valid borders), always in
    fp32: E[x²]−E[x]² loses everything in fp16 (the official code disables autocast here too)."""
    c = x.shape[1]
    size = min(size, x.shape[-1], x.shape[-2])
    g = gaussian_window(size, sigma).to(x.device, torch.float32)
    gh, gw = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, gh, groups=c), gw, groups=c)

    with torch.autocast(x.device.type, enabled=False):
        x, y = x.float(), y.float()
        c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
        mx, my = blur(x), blur(y)
        sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
        cs = (2 * sxy + c2) / (sxx + syy + c2)
        lum = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
        return (lum * cs).mean()


# -- perceptual ----------------------------------------------------------------------------------


class RandomConvFeatures(nn.Module):
    """A fixed, seeded random-init conv net (4 stages, ×2 channels, ÷2 side): the fallback feature space."""

    mean: torch.Tensor  # a buffer, registered in __init__

    def __init__(self, width: int = 16, stages: int = 4, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        convs, c = [], 3
        for i in range(stages):
            conv = nn.Conv2d(c, width * 2**i, 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2.0 / (c * 9)) ** 0.5)
                assert conv.bias is not None  # nn.Conv2d's default bias=True
                conv.bias.zero_()
            convs.append(conv)
            c = width * 2**i
        self.convs = nn.ModuleList(convs)
        self.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``[0,1]`` RGB → one feature map per stage."""
        x, out = images - self.mean, []
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x if i == 0 else F.avg_pool2d(x, 2)))
            out.append(x)
        return out


def feature_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """LPIPS-style distance (unit weights) between two lists of feature maps: per layer the channel-summed
    squared difference of unit-normalised features, averaged over space and batch; then over layers."""
    total = a[0].new_zeros((), dtype=torch.float32)
    for raw_a, raw_b in zip(a, b):
        fa, fb = F.normalize(raw_a.float(), dim=1, eps=1e-10), F.normalize(raw_b.float(), dim=1, eps=1e-10)
        total = total + (fa - fb).pow(2).sum(1).mean()
    return total / max(1, len(a))


# -- adversarial ---------------------------------------------------------------------------------


def lsgan_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((real.float() - 1).pow(2).mean() + fake.float().pow(2).mean())


def lsgan_g_loss(fake: torch.Tensor) -> torch.Tensor:
    return (fake.float() - 1).pow(2).mean()


def adaptive_weight(nll: torch.Tensor, g: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """VQGAN's ‖∇nll‖ / (‖∇G‖ + 1e-4) at the decoder's last layer, clamped to [0, 1e4], detached."""
    gn = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    gg = torch.autograd.grad(g, last_layer, retain_graph=True)[0]
    return (gn.norm() / (gg.norm() + 1e-4)).clamp(0.0, 1e4).detach()


# -- the combined loss ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LossWeights:
    mse: float = 1.0
    perceptual: float = 0.2  # the paper: 0.1 × (2·LPIPS)
    ssim: float = 0.1
    token: float = 1.0
    identity: float = 1.0
    gan: float = 0.8  # the official disc_weight
    adaptive_gan: bool = True


class Vec2FaceLoss:
    """Every generator term as a dict of scalars (``total`` is what is back-propagated).

    ``perceptual_net``: ``"auto"`` (the encoder's ``features`` if it has them, else random conv),
    ``"encoder"`` or ``"random"``. The encoder is frozen (``requires_grad_(False)``, eval mode).
    """

    def __init__(self, encoder: IdentityEncoder, weights: LossWeights = LossWeights(), perceptual_net: str = "auto"):
        self.encoder = encoder.eval().requires_grad_(False)
        self.w = weights
        has = callable(getattr(encoder, "features", None))
        if perceptual_net not in ("auto", "encoder", "random"):
            raise FaceFoundryError(f"vec2face.perceptual_net={perceptual_net!r}: expected auto, encoder or random")
        if perceptual_net == "encoder" and not has:
            raise FaceFoundryError(f"vec2face.perceptual_net=encoder but encoder {encoder.name!r} has no features()")
        self.features: Callable[[torch.Tensor], list[torch.Tensor]] | None = (
            cast("Callable[[torch.Tensor], list[torch.Tensor]]", encoder.features)  # a method of some encoders
            if has and perceptual_net != "random"
            else None
        )
        self.random_net = None if self.features is not None else RandomConvFeatures().to(encoder.device)
        self.perceptual_source = "encoder" if self.features is not None else "random_conv"

    def _features(self, x01: torch.Tensor) -> list[torch.Tensor]:
        if self.features is not None:
            return self.features(x01)
        assert self.random_net is not None  # __init__ makes it exactly when there are no encoder features
        if self.random_net.mean.device != x01.device:
            self.random_net.to(x01.device)
        return self.random_net.features(x01)

    def __call__(
        self,
        generated: torch.Tensor,
        target: torch.Tensor,
        id_vectors: torch.Tensor,
        logits: torch.Tensor,
        tokens: torch.Tensor,
        discriminator: nn.Module | None = None,
        last_layer: torch.Tensor | None = None,
        reconstruct: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Images in ``[-1,1]``; ``discriminator`` given = the GAN term is on. ``reconstruct``: only the first
        that many rows have ``target`` as their target (MSE, perceptual, SSIM); the rest (made with another
        photo's nuisance code) are judged by the identity, token and GAN terms only, and their identity term
        is also reported alone (``identity_swapped``). ``None``: every row."""
        x, y = generated.float(), target.float()
        x01, y01 = (x + 1) / 2, (y + 1) / 2
        r = len(x) if reconstruct is None else int(reconstruct)
        if not 0 < r <= len(x):
            raise FaceFoundryError(f"Vec2FaceLoss: reconstruct={reconstruct} must lie in [1, {len(x)}]")
        terms: dict[str, torch.Tensor] = {"mse": F.mse_loss(x[:r], y[:r])}
        with torch.no_grad():
            real_feats = self._features(y01[:r])
        shared = getattr(self.encoder, "features_and_embedding", None) if self.features is not None else None
        if shared is not None:  # the perceptual maps and the identity come from one encoder pass
            maps, emb = shared(x01)
            fake_feats = [m[:r] for m in maps]
        else:
            fake_feats, emb = self._features(x01[:r]), self.encoder(x01)
        terms["perceptual"] = feature_distance(fake_feats, real_feats)
        terms["ssim"] = 1 - ssim(x01[:r], y01[:r])
        terms["token"] = F.mse_loss(logits.float(), tokens.float())
        per_image = 1 - F.cosine_similarity(emb.float(), id_vectors.float(), dim=1)
        terms["identity"] = per_image.mean()
        if r < len(x):
            terms["identity_swapped"] = per_image[r:].mean().detach()
        nll = (
            self.w.mse * terms["mse"]
            + self.w.perceptual * terms["perceptual"]
            + self.w.ssim * terms["ssim"]
            + self.w.token * terms["token"]
            + self.w.identity * terms["identity"]
        )
        terms["nll"] = nll
        if discriminator is not None:
            g = lsgan_g_loss(discriminator(generated))
            lam = torch.tensor(self.w.gan, device=x.device)
            if self.w.adaptive_gan and last_layer is not None and torch.is_grad_enabled():
                lam = lam * adaptive_weight(nll, g, last_layer)
            terms["gan"], terms["gan_weight"] = g, lam
            terms["total"] = nll + lam * g
        else:
            terms["total"] = nll
        return terms

    @staticmethod
    def discriminator_loss(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """LSGAN discriminator loss on real targets and detached generated images."""
        return lsgan_d_loss(discriminator(real), discriminator(fake.detach()))
