"""IDSync's objective (weightless): L = L_denoise + λ·L_id, on x̂₀ decoded through the frozen VAE.

- ``pred_original_sample``: x̂₀ from the noise prediction, exactly the DDPM scheduler's
  ``step(...).pred_original_sample`` (epsilon or v-prediction), for a whole batch of timesteps at once
  and without the scheduler's random variance draw.
- ``ClassifierIdentityLoss`` ("ce", the paper): cross-entropy of a frozen FR classifier — a backbone and
  its margin head as the platform's trainer saved them — against the true identity, on the decoded
  image resized to the classifier's input (the crops share the alignment template).
- ``CosineIdentityLoss`` ("cosine", for unlabelled photos): 1 − cos(encoder(x̂₀), conditioning vector)
  through a differentiable identity encoder (in the centred space when the model conditions on it).
With λ = 0 nothing of the identity branch runs: the loss is the plain denoising loss.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facefoundry.errors import FaceFoundryError
from facefoundry.identity.base import IdentityEncoder


def pred_original_sample(
    scheduler, model_output: torch.Tensor, timesteps: torch.Tensor, sample: torch.Tensor
) -> torch.Tensor:
    """x̂₀ for each row (its own timestep), as ``DDPMScheduler.step(...).pred_original_sample``."""
    ab = scheduler.alphas_cumprod.to(sample.device, sample.dtype)[timesteps].view(-1, 1, 1, 1)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return (sample - (1 - ab).sqrt() * model_output) / ab.sqrt()
    if kind == "v_prediction":
        return ab.sqrt() * sample - (1 - ab).sqrt() * model_output
    if kind == "sample":
        return model_output
    raise FaceFoundryError(f"scheduler prediction_type {kind!r}: expected epsilon, v_prediction or sample")


def denoising_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise FaceFoundryError(f"scheduler prediction_type {kind!r}: training supports epsilon and v_prediction")


class ClassifierIdentityLoss(nn.Module):
    """Cross-entropy of a frozen FR classifier (backbone + head, no margin) on ``[0,1]`` template-aligned images."""

    name = "ce"

    def __init__(self, folder: str | Path, num_labels: int, map_location: str | torch.device = "cpu"):
        super().__init__()
        from facefoundry.models.bundle import FRModel

        m = FRModel.load(folder, with_head=True, map_location=map_location)
        if m.head is None:
            raise FaceFoundryError(
                f"{folder}: the FR model has no classification head; the CE identity loss needs "
                "one (models from `facefoundry train` save it)"
            )
        classes = m.head.weight.shape[0] if hasattr(m.head, "weight") else m.info.get("num_classes")
        if classes != num_labels:
            raise FaceFoundryError(
                f"{folder}: its head has {classes} classes but the IDSync dataset has {num_labels} "
                "identities; train the classifier on the same dataset (idsync.classifier)"
            )
        self.backbone = m.backbone.eval().requires_grad_(False)
        self.head = m.head.eval().requires_grad_(False)
        self.pre = m.preprocess
        self.source = str(folder)

    def logits(self, images01: torch.Tensor) -> torch.Tensor:
        x = images01
        if self.pre.color_order == "BGR":
            x = x.flip(1)
        size = self.pre.image_size
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)
        emb, _ = self.backbone((x - self.pre.mean) / self.pre.std)
        return self.head.s * self.head.cosines(emb)

    def forward(self, images01: torch.Tensor, labels: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(images01).float(), labels)


class CosineIdentityLoss(nn.Module):
    """1 − cos(encoder(image), conditioning vector), per image averaged."""

    name = "cosine"

    def __init__(self, encoder: IdentityEncoder, mean: torch.Tensor | None = None):
        super().__init__()
        if not encoder.differentiable:
            raise FaceFoundryError(
                f"identity encoder {encoder.name}: not differentiable; the cosine identity loss "
                "needs a torch encoder (dlib, a .pth or a FaceFoundry model folder)"
            )
        self.encoder = encoder.eval().requires_grad_(False)
        self.mean = mean  # set when the model is conditioned on centred vectors: compare in that space

    def forward(self, images01: torch.Tensor, labels: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        e = self.encoder(images01)
        if self.mean is not None:
            e = F.normalize(e - self.mean.to(e), dim=1)
        return (1 - F.cosine_similarity(e.float(), vectors.float(), dim=1)).mean()
