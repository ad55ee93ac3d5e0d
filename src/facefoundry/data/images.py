"""Image decode/encode with errors that name the file. Arrays are HxWx3 uint8 RGB."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from facefoundry.errors import FaceFoundryError


def decode_image(data: bytes, name: str, size: int | None = None) -> np.ndarray:
    """Decode encoded image bytes to RGB uint8; ``size`` checks a square side."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = np.array(im.convert("RGB"))  # writable copy: torch.from_numpy needs one
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise FaceFoundryError(f"{name}: cannot decode image ({exc.__class__.__name__}: {exc})") from None
    except Exception as exc:  # corrupt bytes reach decoder internals (SyntaxError, struct.error…)
        raise FaceFoundryError(
            f"{name}: cannot decode image ({exc.__class__.__name__}: {' '.join(str(exc).split())[:200]})"
        ) from None
    if size is not None and arr.shape[:2] != (size, size):
        raise FaceFoundryError(
            f"{name}: image is {arr.shape[1]}x{arr.shape[0]}, expected {size}x{size} (aligned face size)"
        )
    return arr


def read_image(path: str | Path, size: int | None = None) -> np.ndarray:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FaceFoundryError(f"{path}: cannot read image ({exc.strerror})") from None
    return decode_image(data, str(path), size)


def encode_image(arr: np.ndarray, fmt: str = "png", quality: int = 95) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(np.ascontiguousarray(arr))
    if fmt in ("jpg", "jpeg"):
        im.save(buf, format="JPEG", quality=int(quality))
    else:
        im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def jpeg_roundtrip(arr: np.ndarray, quality: int) -> np.ndarray:
    """Compress and decompress, as a degradation that real photos carry."""
    return decode_image(encode_image(arr, "jpg", quality), "<jpeg>")
