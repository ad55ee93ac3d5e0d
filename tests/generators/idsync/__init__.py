"""IDSync tests: a tiny latent-diffusion model on tiny made-up datasets; ``TinyEncoder`` stands in for dlib."""

from __future__ import annotations

from pathlib import Path

import torch

from facefoundry.config import Config, IDSyncCfg
from facefoundry.data.transforms import Preprocess
from facefoundry.models.bundle import FRModel
from facefoundry.models.heads import MarginHead
from facefoundry.models.iresnet import IResNet

TINY_IDSYNC = {
    "image_size": 16,
    "vae_channels": [8, 8],
    "latent_channels": 4,
    "vae_epochs": 1,
    "vae_batch_size": 8,
    "unet_channels": [16, 32],
    "attention_head_dim": 8,
    "text_width": 32,
    "text_layers": 1,
    "text_heads": 2,
    "batch_size": 8,
    "epochs": 3,
    "warmup_steps": 2,
    "lr": 1e-3,
    "log_every": 1,
}
ID_DIM = 16


def cfg_for(tmp: Path, seed: int = 3, **kw) -> Config:
    return Config(
        base={"seed": seed, "device": "cpu"}, idsync=IDSyncCfg(**{**TINY_IDSYNC, "out": str(tmp / "idsync"), **kw})
    )


def make_classifier(folder: Path, classes: int, size: int = 16) -> Path:
    """A (random) FR model folder with its head, as `facefoundry train` saves one."""
    torch.manual_seed(0)
    backbone = IResNet([1, 1, 1, 1], width=8, embedding_size=16, input_size=size)
    FRModel(
        backbone, Preprocess(image_size=size), {"num_classes": classes}, MarginHead(classes, 16, "arcface", 16.0)
    ).save(folder)
    return folder
