"""Vec2Face (Wu et al., 2024): a feature masked autoencoder that turns identity vectors into faces.

- :mod:`.model` — ``Vec2Face`` (feature expansion + fMAE + VQGAN-style image decoder) and the
  model folder (``vec2face_model.json`` + ``generator/`` + ``discriminator/``);
- :mod:`.discriminator` — the LSGAN patch discriminator;
- :mod:`.masking` — truncated-normal mask ratios and per-batch row masks (weightless);
- :mod:`.losses` — SSIM, perceptual distance, the combined loss (weightless);
- :mod:`.training` — ``train_vec2face``: cached identity vectors, resumable epochs, the model folder.
"""

from facefoundry.generators.vec2face.discriminator import PatchDiscriminator
from facefoundry.generators.vec2face.losses import LossWeights, Vec2FaceLoss, ssim
from facefoundry.generators.vec2face.masking import (
    GENERATE_MASKING,
    TRAIN_MASKING,
    MaskRatioSampler,
    RowMasks,
    row_masks,
)
from facefoundry.generators.vec2face.model import (
    MODEL_INDEX,
    Vec2Face,
    Vec2FaceOutput,
    load_model_folder,
    save_model_folder,
)

__all__ = [
    "GENERATE_MASKING",
    "MODEL_INDEX",
    "TRAIN_MASKING",
    "LossWeights",
    "MaskRatioSampler",
    "PatchDiscriminator",
    "RowMasks",
    "Vec2Face",
    "Vec2FaceLoss",
    "Vec2FaceOutput",
    "load_model_folder",
    "row_masks",
    "save_model_folder",
    "ssim",
    "train_vec2face",
]


def __getattr__(name: str):
    if name == "train_vec2face":
        from facefoundry.generators.vec2face.training import train_vec2face

        return train_vec2face
    raise AttributeError(name)
