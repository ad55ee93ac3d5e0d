"""insightface ``.bin`` verification sets: ``pickle((encoded_images, issame))``.

Images come in pair order (``2i``, ``2i+1`` is pair ``i``). Unpickling is restricted
to plain containers and numpy scalars, so a benchmark file cannot run code.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefoundry.data.images import decode_image, encode_image
from facefoundry.errors import FaceFoundryError
from facefoundry.io import atomic_write_bytes

_ALLOWED = {
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("builtins", "bytearray"),
}


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """What a Python 3 protocol-2 pickle of ``bytes`` calls (``_codecs.encode(text, 'latin1')``); no other codec."""
    if not isinstance(text, str) or encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


def _empty_bytes(*args: object) -> bytes:
    """Protocol 2 pickles ``b""`` as ``bytes()``; any argument (``bytes(10**12)``) is refused."""
    if args:
        raise pickle.UnpicklingError("refusing bytes() with arguments")
    return b""


# Python 3 writers using protocol 2 (common for .bin files) encode bytes through these two: safe wrappers only
_WRAPPED = {
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): _empty_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _WRAPPED:
            return _WRAPPED[(module, name)]
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


@dataclass
class PairSet:
    name: str
    images: np.ndarray  # N x H x W x 3 uint8 RGB, N = 2 * len(issame)
    issame: np.ndarray  # bool, one per pair


def read_bin(path: str | Path, image_size: int | None = None) -> PairSet:
    path = Path(path)
    if not path.is_file():
        raise FaceFoundryError(f"{path}: benchmark file does not exist")
    try:
        with open(path, "rb") as fh:
            loaded = _SafeUnpickler(fh, encoding="bytes").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        ImportError,
        MemoryError,
        RecursionError,
        OverflowError,
    ) as exc:
        raise FaceFoundryError(f"{path}: not an insightface .bin ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(loaded, (tuple, list)) or len(loaded) != 2:
        raise FaceFoundryError(
            f"{path}: not an insightface .bin (expected a pair (images, issame), got {type(loaded).__name__})"
        )
    bins, issame = loaded
    try:
        bins, issame = list(bins), list(issame)
    except TypeError:
        raise FaceFoundryError(f"{path}: not an insightface .bin (images and issame must be sequences)") from None
    if not all(isinstance(b, (bytes, bytearray, memoryview, np.ndarray)) for b in bins):
        raise FaceFoundryError(f"{path}: not an insightface .bin (every image must be encoded bytes)")
    if not all(isinstance(x, (bool, int, np.bool_, np.integer)) for x in issame):
        raise FaceFoundryError(f"{path}: not an insightface .bin (issame must be booleans)")
    issame = np.asarray([bool(x) for x in issame], dtype=bool)
    if len(bins) != 2 * len(issame):
        raise FaceFoundryError(
            f"{path}: {len(bins)} images for {len(issame)} pairs; a .bin needs exactly 2 images per pair"
        )
    if len(issame) == 0:
        raise FaceFoundryError(f"{path}: benchmark has no pairs")
    images = [decode_image(bytes(b), f"{path}#image{i}") for i, b in enumerate(bins)]
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise FaceFoundryError(f"{path}: images differ in size {sorted(shapes)}")
    arr = np.stack(images)
    if image_size is not None and arr.shape[1:3] != (image_size, image_size):
        raise FaceFoundryError(
            f"{path}: images are {arr.shape[2]}x{arr.shape[1]}, the model expects {image_size}x{image_size} "
            "(evaluate.resize: true resizes them)"
        )
    return PairSet(name=path.stem, images=arr, issame=issame)


def write_bin(
    path: str | Path,
    images: list[np.ndarray] | np.ndarray,
    issame: list[bool] | np.ndarray,
    fmt: str = "jpg",
    quality: int = 95,
) -> None:
    if len(images) != 2 * len(issame):
        raise FaceFoundryError(f"{path}: {len(images)} images for {len(issame)} pairs (need 2 per pair)")
    bins = [encode_image(im, fmt, quality) for im in images]
    buf = io.BytesIO()
    pickle.dump((bins, [bool(x) for x in issame]), buf, protocol=pickle.HIGHEST_PROTOCOL)
    atomic_write_bytes(path, buf.getvalue())
