"""Loading unlabelled target photos and converting between uint8 images and [-1, 1] tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facefoundry.data.images import read_image
from facefoundry.data.sources import IMAGE_EXTS
from facefoundry.errors import FaceFoundryError


def to_signed(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 NHWC → float NCHW in [-1, 1]."""
    x = torch.as_tensor(images)
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def resize_square(img: np.ndarray, size: int, crop: float = 1.0) -> np.ndarray:
    """Centre-crop the largest square (times ``crop``) and resize with antialiasing."""
    h, w = img.shape[:2]
    side = int(min(h, w) * crop)
    y, x = (h - side) // 2, (w - side) // 2
    t = torch.from_numpy(np.ascontiguousarray(img[y : y + side, x : x + side])).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def load_folder(folder: str | Path, size: int, crop: float = 1.0, limit: int = 0) -> np.ndarray:
    """All images of an unlabelled folder (recursively), as uint8 [N, size, size, 3]."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FaceFoundryError(f"{folder}: realism target folder does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    if limit:
        files = files[:limit]
    if not files:
        raise FaceFoundryError(f"{folder}: no images in realism target folder")
    return np.stack([resize_square(read_image(p), size, crop) for p in files])
