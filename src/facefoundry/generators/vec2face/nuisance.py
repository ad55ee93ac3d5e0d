"""A learned nuisance code for Vec2Face (``vec2face.nuisance_codes``; off = the paper).

The paper trains on labelled photos (WebFace4M): many images per identity, each with its own
ArcFace vector, so the vector's within-identity spread carries pose, light and expression, and
σ-perturbations of a vector vary them. On unlabelled photos (one image per person) with an
encoder that is blind to everything but identity (dlib), the MSE-optimal output for a vector is
a blurred mean face, and a vector's variations barely differ (README, "Vec2Face on real photos").

This module gives the generator what the vector cannot: a small convolutional encoder
q(z | x) of the *training target* (VAE-style: mean and log-variance, reparameterised, KL to
N(0, I) weighted by ``vec2face.nuisance_kl_weight``). Its code is added to the projected vector
through the generator's attribute projection (``attr_dim``), as geometry codes are. The KL keeps
the code small and close to the prior, so identity stays with the vector (the identity loss pulls
the same way); at generation every image draws its own code from the training photos' aggregate
posterior (per-axis mean and std of the posterior means, saved in the model index; truncated), so
the images of one identity differ in hair, background, light and pose.

The encoder is a training-only component: it is saved in the model folder (``nuisance_encoder/``)
beside the discriminator, and generation does not load it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from facefoundry.errors import FaceFoundryError
from facefoundry.models.base import ConfigModule, register_to_config


class NuisanceEncoder(ConfigModule):
    """Image ``[B,3,S,S]`` in ``[-1,1]`` → (mean, log-variance), each ``[B, dim]``.

    ``levels`` stride-2 convolutions (channels doubling from ``channels``), global average pool,
    one linear layer to ``2·dim``. The log-variance starts at ``init_logvar`` (small noise), so that
    the first codes carry the image and the generator learns to read them; with the KL weight
    ramped up from 0 (``vec2face.nuisance_kl_warmup_epochs``) this avoids the posterior collapse
    measured with noisy initial codes and the full weight from step 0 (KL → 0.3 nats by epoch 9, MSE
    at the mean-face level)."""

    weights_name = "nuisance_encoder.pth"

    @register_to_config
    def __init__(self, dim: int = 16, channels: int = 32, levels: int = 3, init_logvar: float = -6.0):
        super().__init__()
        if dim < 1 or channels < 1 or levels < 1:
            raise FaceFoundryError(
                f"NuisanceEncoder: dim, channels and levels must be ≥ 1, got {dim}, {channels}, {levels}"
            )
        layers: list[nn.Module] = []
        cin = 3
        for level in range(levels):
            cout = channels * 2**level
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.GroupNorm(math.gcd(32, cout), cout), nn.SiLU()]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 2 * dim)
        self.dim = dim
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.bias[dim:] = init_logvar

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(images).mean(dim=(2, 3))
        mean, logvar = self.head(h).chunk(2, dim=1)
        return mean, logvar.clamp(-10.0, 5.0)


def reparameterise(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``mean + exp(logvar/2)·ε``, ε ~ N(0, I) (from ``generator`` when given; CPU stream, moved)."""
    eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
    return mean + (0.5 * logvar).exp() * eps


def kl_per_axis(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, e^logvar) ‖ N(0, I)) of each code axis, averaged over the batch: ``[dim]`` (nats)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean(dim=0)


def kl_to_prior(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, e^logvar) ‖ N(0, I)), summed over the code, averaged over the batch (nats)."""
    return kl_per_axis(mean, logvar).sum()


def _floored(per_axis: torch.Tensor, free_bits: float) -> torch.Tensor:
    return per_axis.clamp_min(free_bits).sum() if free_bits > 0 else per_axis.sum()


def free_bits_kl(mean: torch.Tensor, logvar: torch.Tensor, free_bits: float = 0.0) -> torch.Tensor:
    """The KL objective with free bits (Kingma et al., 2016): each axis's batch-mean KL counts as at least
    ``free_bits`` nats, so an axis below the floor gets no gradient towards the prior. 0 = :func:`kl_to_prior`."""
    return _floored(kl_per_axis(mean, logvar), free_bits)


def nuisance_codes(
    encoder: NuisanceEncoder, images: torch.Tensor, generator: torch.Generator | None = None, free_bits: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sampled codes ``[B, dim]``, KL in nats, the KL objective with ``free_bits``) for a batch of targets."""
    mean, logvar = encoder(images)
    per_axis = kl_per_axis(mean, logvar)  # once, for both the logged KL and the objective
    return reparameterise(mean, logvar, generator), per_axis.sum(), _floored(per_axis, free_bits)


def swap_codes(codes: torch.Tensor, swapped: int) -> torch.Tensor:
    """The last ``swapped`` rows take the codes of the first ``swapped`` rows (other photos of the batch);
    ``swapped`` ≤ half the batch, so no row keeps its own code."""
    n = codes.shape[0]
    if swapped <= 0:
        return codes
    if 2 * swapped > n:
        raise FaceFoundryError(f"swap_codes: {swapped} swapped rows need a batch of at least {2 * swapped}, got {n}")
    return torch.cat([codes[: n - swapped], codes[:swapped]])


def code_statistics(means: torch.Tensor) -> dict[str, object]:
    """Of the training photos' posterior means ``[N, dim]``: per-axis mean and standard deviation (generation
    draws its codes from N(mean, std²), the aggregate posterior, which a small KL weight leaves wider or
    narrower than the prior), the mean per-axis variance, the active axes (variance > 0.01, the usual VAE
    measure of a used axis; it assumes the prior's unit scale) and the effective number of axes, the
    participation ratio (Σλ)²/Σλ² of the codes' covariance eigenvalues, = tr(C)²/‖C‖²_F: scale-free, 1 for a
    code that varies along one direction, ``dim`` for one that varies equally along all (0 for a constant
    code). With almost
    no KL weight (an autoencoder code) the codes can be small in scale and still used, so the first reads 0;
    neither says whether the decoder reads the code (swap codes and compare the output for that)."""
    means = means.detach().float()
    dim = means.shape[1]
    cov = torch.cov(means.T).reshape(dim, dim) if len(means) > 1 else torch.zeros(dim, dim)
    var = cov.diagonal()
    total = float(var.sum())  # Σλ; and Σλ² is the squared Frobenius norm: no eigendecomposition needed
    effective = total**2 / float(cov.pow(2).sum()) if total > 0 else 0.0
    return {
        "nuisance_code_mean": [round(float(x), 6) for x in means.mean(dim=0)],
        "nuisance_code_std": [round(float(x), 6) for x in var.sqrt()],
        "nuisance_mean_variance": float(var.mean()),
        "nuisance_active_axes": int((var > 0.01).sum()),
        "nuisance_effective_axes": round(effective, 3),
    }


__all__ = [
    "NuisanceEncoder",
    "code_statistics",
    "free_bits_kl",
    "kl_per_axis",
    "kl_to_prior",
    "nuisance_codes",
    "reparameterise",
    "swap_codes",
]
