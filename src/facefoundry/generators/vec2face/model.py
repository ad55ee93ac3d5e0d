"""Vec2Face (Wu et al., 2024): identity vector → face image, through a feature masked autoencoder.

Three parts, one module (its constructor arguments are its saved config, diffusers-style):

1. **Feature expansion** — ``Linear(id_dim→W)`` projects the identity vector; a per-dimension
   ``Linear(1→N)`` turns each of its ``W`` values into ``N`` numbers, giving the ``N×W`` **feature
   map** (``N = (image_size/patch)²`` feature tokens; the paper: 49×768 at 112 px, patch 16). The
   projected vector is prepended as token 0 (the **identity token**); learned position embeddings.
2. **fMAE** — a ViT encoder over the tokens left after **row masking** (:mod:`.masking`): masked
   rows carry the projected vector instead of their own content, dropped rows are removed; a ViT
   decoder refills every masked row with the encoder's output for the identity token (the image
   feature), adds its own position embeddings and predicts all ``N+1`` tokens.
3. **Image decoder** — a VQGAN-style convolutional decoder from the ``√N×√N`` token grid to pixels:
   ``len(decoder_multipliers)`` levels, each doubling the side, so ``patch = 2^(levels-1)``
   (the paper: channels 128, multipliers [1,1,2,2,4], 7×7 → 112).

Training and generation run the same path; only the mask-ratio distribution differs
(training min 0.5 / mean 0.75, generation min 0.1 / mean 0.15).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from facefoundry.errors import FaceFoundryError
from facefoundry.generators.vec2face.masking import MaskRatioSampler, RowMasks, row_masks
from facefoundry.io import load_json_file
from facefoundry.models.base import ConfigModule, register_to_config

MODEL_INDEX = "vec2face_model.json"


# -- transformer ---------------------------------------------------------------------------------


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj_drop(self.proj(y.transpose(1, 2).reshape(b, n, c)))


class _Block(nn.Module):
    """Pre-norm ViT block: x + attn(LN(x)), x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads, dropout)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


# -- VQGAN-style image decoder -------------------------------------------------------------------


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, c), c, eps=1e-6)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class ImageDecoder(nn.Module):
    """Token grid ``[B, z, g, g]`` → image ``[B, 3, g·2^(L-1), g·2^(L-1)]`` (VQGAN decoder, no attention)."""

    def __init__(self, z_channels: int, channels: int, multipliers: Sequence[int], res_blocks: int):
        super().__init__()
        mults = list(multipliers)
        c = channels * mults[-1]
        self.conv_in = nn.Conv2d(z_channels, c, 3, padding=1)
        self.mid = nn.Sequential(_ResBlock(c, c), _ResBlock(c, c))
        ups: list[nn.Module] = []
        for level in reversed(range(len(mults))):
            cout = channels * mults[level]
            for _ in range(res_blocks):
                ups.append(_ResBlock(c, cout))
                c = cout
            if level != 0:
                ups += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)]
        self.up = nn.Sequential(*ups)
        self.norm_out = _norm(c)
        self.conv_out = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.up(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))


# -- Vec2Face ------------------------------------------------------------------------------------


@dataclass
class Vec2FaceOutput:
    """``images``: ``[B,3,S,S]``, trained towards ``[-1,1]`` (unclamped, as in the paper; ``generate``
    clamps). ``logits``: the decoder's ``N`` feature-token predictions ``[B,N,W]``; ``tokens``: the
    unmasked feature map they are trained to match (detached); ``masks``: the row masks used."""

    images: torch.Tensor
    logits: torch.Tensor
    tokens: torch.Tensor
    masks: RowMasks


class Vec2Face(ConfigModule):
    """Feature expansion + fMAE encoder/decoder + image decoder."""

    weights_name = "vec2face.pth"
    id_mean: torch.Tensor  # buffers, registered in __init__ only with standardise_inputs
    id_scale: torch.Tensor

    @register_to_config
    def __init__(
        self,
        id_dim: int = 128,
        image_size: int = 56,
        patch: int = 8,
        width: int = 64,
        depth: int = 2,
        heads: int = 4,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
        decoder_channels: int = 16,
        decoder_multipliers: Sequence[int] = (1, 1, 2, 2),
        z_channels: int = 32,
        decoder_res_blocks: int = 1,
        train_mask: Sequence[float] = (0.5, 0.75, 0.25),
        generate_mask: Sequence[float] = (0.1, 0.15, 0.25),
        standardise_inputs: bool = False,
        attr_dim: int = 0,
    ):
        super().__init__()
        check_geometry(image_size, patch, decoder_multipliers, width, heads, decoder_heads)
        self.image_size, self.patch, self.width = image_size, patch, width
        self.grid = image_size // patch
        self.rows = self.grid**2
        self.train_sampler = MaskRatioSampler(*train_mask)
        self.generate_sampler = MaskRatioSampler(*generate_mask)
        # feature expansion
        self.id_proj = nn.Linear(id_dim, width)  # the paper's latent_prior_proj_f
        # (v − mean)·scale before the projection, from the training vectors (set_input_stats); off = the paper
        self.standardise_inputs = standardise_inputs
        if standardise_inputs:  # buffers only when used: models saved without them keep loading
            self.register_buffer("id_mean", torch.zeros(id_dim))
            self.register_buffer("id_scale", torch.ones(()))
        # optional geometry code (facefoundry.identity.attributes), added to the projection; 0 = the paper
        self.attr_dim = attr_dim
        self.attr_proj = nn.Linear(attr_dim, width, bias=False) if attr_dim > 0 else None
        self.feature_token = nn.Linear(1, self.rows)  # per-dimension 1 → N
        self.pos_embed = nn.Parameter(torch.zeros(1, self.rows + 1, width))
        self.embed_norm = nn.LayerNorm(width, eps=1e-6)
        self.embed_drop = nn.Dropout(dropout)
        # fMAE encoder / decoder
        self.blocks = nn.ModuleList(_Block(width, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.decoder_embed = nn.Linear(width, width)
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, self.rows + 1, width))
        self.decoder_blocks = nn.ModuleList(
            _Block(width, decoder_heads, mlp_ratio, dropout) for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(width, eps=1e-6)
        # image decoder
        self.im_decoder_proj = nn.Linear(width, z_channels)
        self.im_decoder = ImageDecoder(z_channels, decoder_channels, decoder_multipliers, decoder_res_blocks)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.decoder_pos_embed, std=0.02)

    @property
    def id_dim(self) -> int:
        return self.id_proj.in_features

    @property
    def last_layer(self) -> torch.Tensor:
        """The image decoder's output weight (for the adaptive GAN weight)."""
        return self.im_decoder.conv_out.weight

    @torch.no_grad()
    def set_input_stats(self, vectors: torch.Tensor) -> None:
        """Centre inputs on the training vectors' mean and scale them to unit mean norm.

        dlib's unit vectors share a large common direction (different faces: cosine ≈ 0.84), so
        the identity-specific part is a small offset on a big constant; standardising gives the
        projection the input scale ArcFace's roughly centred features have. Used only when
        ``standardise_inputs``; the statistics are buffers saved with the weights."""
        if not self.standardise_inputs:
            raise FaceFoundryError("Vec2Face.set_input_stats needs standardise_inputs=True")
        v = vectors.float().to(self.id_mean.device)
        self.id_mean.copy_(v.mean(0))
        self.id_scale.copy_(1.0 / (v - self.id_mean).norm(dim=1).mean().clamp_min(1e-8))

    # -- pieces ----------------------------------------------------------------------------------
    def expand(
        self, id_vectors: torch.Tensor, attributes: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Feature expansion: ``[B,id_dim]`` (+ geometry codes ``[B,attr_dim]``; none: the mean, zeros)
        → (projected vector ``[B,W]``, feature map ``[B,N,W]``)."""
        if id_vectors.ndim != 2 or id_vectors.shape[1] != self.id_dim:
            raise FaceFoundryError(
                f"Vec2Face: identity vectors must be [B, {self.id_dim}], got {list(id_vectors.shape)}"
            )
        if self.standardise_inputs:
            id_vectors = (id_vectors - self.id_mean) * self.id_scale
        v = self.id_proj(id_vectors)
        if attributes is not None and self.attr_proj is None:
            raise FaceFoundryError("Vec2Face: this model takes no attribute codes (attr_dim=0)")
        if self.attr_proj is not None and attributes is not None:
            if tuple(attributes.shape) != (id_vectors.shape[0], self.attr_dim):
                raise FaceFoundryError(
                    f"Vec2Face: attribute codes must be [{id_vectors.shape[0]}, {self.attr_dim}], "
                    f"got {list(attributes.shape)}"
                )
            v = v + self.attr_proj(attributes.to(v.dtype))
        return v, self.feature_token(v.unsqueeze(-1)).transpose(1, 2)

    def _masks(
        self, batch: int, mask_ratio: float | MaskRatioSampler | None, generator: torch.Generator | None
    ) -> RowMasks:
        sampler = self.train_sampler if self.training else self.generate_sampler
        if isinstance(mask_ratio, MaskRatioSampler):
            sampler, mask_ratio = mask_ratio, None
        ratio = float(sampler.sample(1, generator)[0]) if mask_ratio is None else float(mask_ratio)
        if not 0.0 <= ratio <= 1.0:
            raise FaceFoundryError(f"Vec2Face: mask_ratio must lie in [0, 1], got {ratio}")
        return row_masks(batch, self.rows, ratio, sampler.min, generator)

    def encode(self, v: torch.Tensor, tokens: torch.Tensor, masks: RowMasks) -> torch.Tensor:
        """fMAE encoder: masked rows get the projected vector, dropped rows are removed."""
        x = torch.where(masks.masked.unsqueeze(-1), v.unsqueeze(1), tokens)
        x = torch.cat([v.unsqueeze(1), x], dim=1)
        x = self.embed_drop(self.embed_norm(x + self.pos_embed))
        idx = masks.kept.unsqueeze(-1).expand(-1, -1, x.shape[-1])
        x = torch.cat([x[:, :1], x[:, 1:].gather(1, idx)], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def decode_tokens(self, x: torch.Tensor, masks: RowMasks) -> torch.Tensor:
        """fMAE decoder: every masked row is refilled with the identity token's encoding → ``[B,N+1,W]``."""
        x = self.decoder_embed(x)
        ident = x[:, :1]
        rows = ident.expand(-1, self.rows, -1)
        idx = masks.kept.unsqueeze(-1).expand(-1, -1, x.shape[-1])
        rows = rows.scatter(1, idx, x[:, 1:])
        rows = torch.where(masks.masked.unsqueeze(-1), ident, rows)
        x = torch.cat([ident, rows], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_norm(x)

    def render(self, logits: torch.Tensor) -> torch.Tensor:
        """Token grid → pixels through the image decoder."""
        b = logits.shape[0]
        z = self.im_decoder_proj(logits).reshape(b, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        return self.im_decoder(z)

    # -- entry points ----------------------------------------------------------------------------
    def forward(
        self,
        id_vectors: torch.Tensor,
        images: torch.Tensor | None = None,
        mask_ratio: float | MaskRatioSampler | None = None,
        generator: torch.Generator | None = None,
        attributes: torch.Tensor | None = None,
    ) -> Vec2FaceOutput:
        """Identity vectors → images. ``mask_ratio``: a fixed ratio, a sampler, or ``None`` for the
        model's own training (``.train()``) or generation (``.eval()``) distribution. ``images``, when
        given, are the targets the caller will compare against; only their shape is checked."""
        if images is not None and tuple(images.shape[1:]) != (3, self.image_size, self.image_size):
            raise FaceFoundryError(
                f"Vec2Face: target images are {list(images.shape[1:])}, this model "
                f"makes [3, {self.image_size}, {self.image_size}]"
            )
        v, tokens = self.expand(id_vectors, attributes)
        masks = self._masks(v.shape[0], mask_ratio, generator).to(v.device)
        logits = self.decode_tokens(self.encode(v, tokens, masks), masks)[:, 1:]
        return Vec2FaceOutput(self.render(logits), logits, tokens.detach(), masks)

    @torch.no_grad()
    def generate(
        self,
        id_vectors: torch.Tensor,
        mask_ratio: float | MaskRatioSampler | None = None,
        generator: torch.Generator | None = None,
        batch_size: int = 64,
        attributes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Images in ``[-1,1]`` (clamped), eval mode, generation mask-ratio distribution by default."""
        was = self.training
        self.eval()
        try:
            out = [
                self(
                    id_vectors[s : s + batch_size],
                    mask_ratio=mask_ratio,
                    generator=generator,
                    attributes=None if attributes is None else attributes[s : s + batch_size],
                ).images
                for s in range(0, len(id_vectors), batch_size)
            ]
        finally:
            self.train(was)
        return torch.cat(out).clamp(-1, 1) if out else torch.zeros(0, 3, self.image_size, self.image_size)


def check_geometry(
    image_size: int, patch: int, multipliers: Sequence[int], width: int, heads: int, decoder_heads: int
) -> None:
    """One-line errors for sizes that cannot fit together."""
    if patch < 1 or image_size % patch:
        raise FaceFoundryError(f"vec2face.patch={patch} does not divide vec2face.image_size={image_size}")
    if not multipliers or 2 ** (len(multipliers) - 1) != patch:
        raise FaceFoundryError(
            f"vec2face.decoder_multipliers={list(multipliers)}: the image decoder doubles the "
            f"side per extra level, so patch {patch} needs {int(math.log2(patch)) + 1} levels "
            "(patch must be a power of two)"
        )
    for key, h in (("heads", heads), ("decoder_heads", decoder_heads)):
        if h < 1 or width % h:
            raise FaceFoundryError(f"vec2face.{key}={h} does not divide vec2face.width={width}")


# -- the model folder ----------------------------------------------------------------------------


def save_model_folder(
    folder: str | Path,
    generator: Vec2Face,
    discriminator: ConfigModule | None,
    info: dict[str, Any],
    extras: dict[str, ConfigModule] | None = None,
) -> None:
    """``folder/vec2face_model.json`` + ``generator/`` (+ ``discriminator/``, + one subfolder per training-only
    component in ``extras``, e.g. ``nuisance_encoder/``), diffusers-style."""
    from facefoundry.io import atomic_write_json

    folder = Path(folder)
    generator.save_pretrained(folder / "generator")
    parts = {"generator": "generator"}
    if discriminator is not None:
        discriminator.save_pretrained(folder / "discriminator")
        parts["discriminator"] = "discriminator"
    for name, component in (extras or {}).items():
        component.save_pretrained(folder / name)
        parts[name] = name
    atomic_write_json(folder / MODEL_INDEX, {"_class_name": "Vec2Face", **parts, **info})


def load_model_folder(folder: str | Path, map_location: str | torch.device = "cpu") -> tuple[Vec2Face, dict]:
    """(generator in eval mode, the index) of a folder written by :func:`save_model_folder`."""
    folder = Path(folder)
    index_path = folder / MODEL_INDEX
    if not index_path.is_file():
        raise FaceFoundryError(f"{index_path}: missing (not a Vec2Face model folder)")
    index = load_json_file(index_path, "Vec2Face model index")
    model = Vec2Face.from_pretrained(folder / index.get("generator", "generator"), map_location=map_location)
    return model.eval(), index
