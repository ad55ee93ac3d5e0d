"""The IDSync model folder and the networks built from config.

A diffusers-style composite folder in the Arc2Face layout (Arc2Face ships ``arc2face/`` for the UNet
and ``encoder/`` for the CLIP text encoder; the rest is Stable Diffusion's layout):

    idsync_model.json   index: settings, identity encoder spec, fingerprint (written last)
    arc2face/           UNet2DConditionModel   (a folder named ``unet/`` is read too)
    encoder/            CLIPTextModel          (``text_encoder/`` is read too)
    vae/                AutoencoderKL
    tokenizer/          CLIPTokenizer
    scheduler/          DDPMScheduler (training noise schedule; generation derives DPM-Solver++ from it)
    id_vectors.npy      the training photos' identity vectors (PCA sampling fits on them)
    id_labels.npy
    id_mean.npy         their mean, when the model conditions on centred vectors (``centre_vectors``)

Every component saves with ``save_pretrained``: its constructor arguments are its config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facefoundry.config import IDSyncCfg
from facefoundry.errors import FaceFoundryError
from facefoundry.generators.idsync.conditioning import encode_empty, encode_identity, id_token, prompt_ids
from facefoundry.io import atomic_dir, atomic_write_json, load_json_file

MODEL_INDEX = "idsync_model.json"
ID_VECTORS, ID_LABELS, ID_MEAN = "id_vectors.npy", "id_labels.npy", "id_mean.npy"
UNET_DIRS = ("arc2face", "unet")  # saved as the first; either is read
TEXT_DIRS = ("encoder", "text_encoder")


def quiet() -> None:
    """diffusers/transformers: no accelerate hints or shard progress bars in our logs (errors still show)."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def build_vae(c: IDSyncCfg):
    from diffusers import AutoencoderKL

    n = len(c.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(c.vae_channels),
        layers_per_block=1,
        latent_channels=c.latent_channels,
        norm_num_groups=_groups(c.vae_channels),
        sample_size=c.image_size,
    )


def build_unet(c: IDSyncCfg, latent_size: int, latent_channels: int, cross_dim: int):
    from diffusers import UNet2DConditionModel

    n = len(c.unet_channels)
    down = ("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",)  # SD: attention everywhere but the deepest level
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1)
    heads = tuple(ch // c.attention_head_dim for ch in c.unet_channels)  # diffusers' `attention_head_dim` = heads
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(c.unet_channels),
        layers_per_block=c.unet_layers_per_block,
        cross_attention_dim=cross_dim,
        attention_head_dim=heads,
        norm_num_groups=_groups(c.unet_channels),
    )


def build_text_encoder(c: IDSyncCfg, tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=c.text_width,
        intermediate_size=4 * c.text_width,
        num_hidden_layers=c.text_layers,
        num_attention_heads=c.text_heads,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(cfg)


def build_scheduler(c: IDSyncCfg):
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=c.train_timesteps,
        beta_start=c.beta_start,
        beta_end=c.beta_end,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        clip_sample=False,
    )


def _groups(channels: list[int]) -> int:
    g = 32
    while any(ch % g for ch in channels):
        g //= 2
    return g


@dataclass
class IDSync:
    """The four components plus the noise schedule; ``info`` is the folder's index."""

    vae: Any
    unet: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.input_ids = prompt_ids(self.tokenizer)
        self.token = id_token(self.tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def scaling(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def image_size(self) -> int:
        return int(self.info.get("image_size") or self.vae.config.sample_size)

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** (len(self.vae.config.block_out_channels) - 1)

    def to(self, device: torch.device | str) -> IDSync:
        for m in (self.vae, self.unet, self.text_encoder):
            m.to(device)
        return self

    def condition(self, vectors: torch.Tensor) -> torch.Tensor:
        return encode_identity(self.text_encoder, self.input_ids, self.token, vectors)

    def unconditional(self) -> torch.Tensor:
        return encode_empty(self.text_encoder, self.tokenizer, self.device)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents → images in ``[-1, 1]`` (differentiable)."""
        return self.vae.decode(latents / self.scaling).sample


def conditioning_space(vectors: np.ndarray, mean: np.ndarray | None) -> np.ndarray:
    """Encoder vectors → the unit vectors the model is conditioned on: unit(v − mean), or unit(v) without a mean."""
    v = np.asarray(vectors, np.float64)
    if mean is not None:
        v = v - np.asarray(mean, np.float64)
    return (v / np.linalg.norm(v, axis=-1, keepdims=True).clip(1e-12)).astype(np.float32)


def save_model_folder(
    model: IDSync, folder: str | Path, vectors: np.ndarray, labels: np.ndarray, mean: np.ndarray | None = None
) -> Path:
    quiet()
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        model.unet.save_pretrained(tmp / UNET_DIRS[0])
        model.text_encoder.save_pretrained(tmp / TEXT_DIRS[0])
        model.vae.save_pretrained(tmp / "vae")
        model.tokenizer.save_pretrained(tmp / "tokenizer")
        model.scheduler.save_pretrained(tmp / "scheduler")
        np.save(tmp / ID_VECTORS, np.asarray(vectors, np.float32))
        np.save(tmp / ID_LABELS, np.asarray(labels))
        if mean is not None:
            np.save(tmp / ID_MEAN, np.asarray(mean, np.float32))
        atomic_write_json(tmp / MODEL_INDEX, {"_class_name": "IDSync", **model.info})
    return folder


def _first(folder: Path, names: tuple[str, ...]) -> Path:
    for n in names:
        if (folder / n).is_dir():
            return folder / n
    raise FaceFoundryError(
        f"{folder}: no {' or '.join(f'{n}/' for n in names)} subfolder "
        "(an IDSync folder from train-idsync, or a diffusers folder in the Arc2Face layout)"
    )


def load_components(folder: str | Path, map_location: str | torch.device = "cpu") -> IDSync:
    """Any folder with the four components (Arc2Face or Stable-Diffusion names); ``info`` empty if no index."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    quiet()
    folder = Path(folder)
    if not folder.is_dir():
        raise FaceFoundryError(f"{folder}: no such model folder")
    info = load_json_file(folder / MODEL_INDEX, "IDSync index") if (folder / MODEL_INDEX).is_file() else {}
    try:
        unet = UNet2DConditionModel.from_pretrained(_first(folder, UNET_DIRS))
        text = CLIPTextModel.from_pretrained(_first(folder, TEXT_DIRS))
        vae = AutoencoderKL.from_pretrained(_first(folder, ("vae",)))
        tok = CLIPTokenizer.from_pretrained(_first(folder, ("tokenizer",)))
        sched = (
            DDPMScheduler.from_pretrained(_first(folder, ("scheduler",))) if (folder / "scheduler").is_dir() else None
        )
    except (OSError, ValueError, KeyError) as exc:
        raise FaceFoundryError(f"{folder}: unreadable model component ({str(exc).splitlines()[0]})") from None
    if sched is None:
        raise FaceFoundryError(f"{folder}: no scheduler/ subfolder (the training noise schedule)")
    info.pop("_class_name", None)
    return IDSync(vae, unet, text, tok, sched, info).to(map_location)


def load_model_folder(folder: str | Path, map_location: str | torch.device = "cpu") -> IDSync:
    """A folder written by ``train-idsync`` (it has the index and the training identity vectors)."""
    folder = Path(folder)
    if not (folder / MODEL_INDEX).is_file():
        raise FaceFoundryError(
            f"{folder}: not an IDSync model folder (no {MODEL_INDEX}); train one with `facefoundry train-idsync`"
        )
    model = load_components(folder, map_location)
    for m in (model.vae, model.unet, model.text_encoder):
        m.eval().requires_grad_(False)
    return model


def load_identity_vectors(folder: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(training vectors as the encoder gave them, their labels, the centring mean or None)."""
    folder = Path(folder)
    path = folder / ID_VECTORS
    if not path.is_file():
        raise FaceFoundryError(f"{path}: missing; IDSync samples identities from the training photos' vectors")
    vec = np.load(path)
    lp, mp = folder / ID_LABELS, folder / ID_MEAN
    return vec, (np.load(lp) if lp.is_file() else np.arange(len(vec))), (np.load(mp) if mp.is_file() else None)
