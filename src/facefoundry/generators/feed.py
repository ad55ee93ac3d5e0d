"""What every generator trained on photos shares: the cached per-image identity vectors and pixel conventions.

Images come from :class:`facefoundry.train.feed.Feeder` (``resize=True``), the FR trainer's feed.

- ``identity_vectors``: every training image's unit vector from a frozen encoder, cached on disk by the
  dataset's DVC hash, the encoder spec and the size (a generator's conditioning, PCA and τ filter use them);
- ``to_signed`` / ``to_uint8``: the ``[-1, 1]`` convention of generator networks.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from facefoundry.identity.base import IdentityEncoder
from facefoundry.identity.store import embed_rows, source_keys
from facefoundry.io import atomic_write_bytes, atomic_write_json
from facefoundry.train.feed import Feeder


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC → float NCHW in ``[-1, 1]``."""
    return images.permute(0, 3, 1, 2).float().div(127.5).sub(1)


# -- identity vectors ----------------------------------------------------------------------------


def identity_vectors(
    feed: Feeder,
    encoder: IdentityEncoder,
    cache_dir: Path,
    dataset_digest: str,
    batch_size: int = 64,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> torch.Tensor:
    """Every image's unit identity vector ``[N, dim]`` (CPU), cached on disk beside the model output."""
    spec = encoder.spec()
    path = (
        Path(cache_dir)
        / f"{cache_key({'data': dataset_digest, 'encoder': spec, 'size': feed.size, 'n': len(feed)})}.npy"
    )
    if path.is_file():
        try:
            vec = np.load(path)
            if vec.shape == (len(feed), encoder.dim):
                log(f"identity vectors: cached {path}")
                return torch.from_numpy(vec)
        except (OSError, ValueError):
            pass
        log(f"{path}: unreadable or wrong shape; recomputing")
    rows = np.arange(len(feed))
    native = feed.source.load(0).shape[0] == feed.size if len(feed) else False  # stored vectors are of stored images
    out = embed_rows(
        lambda i: feed.batch(torch.tensor([i]))[0].numpy(),
        rows,
        encoder,
        batch_size,
        "identity vectors" if progress else "",
        source_keys(feed.source, rows) if native else None,
    )
    buf = io.BytesIO()
    np.save(buf, out)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_json(
        path.with_suffix(".json"),
        {"dataset_dvc_md5": dataset_digest, "encoder": spec, "image_size": feed.size, "images": len(feed)},
    )
    log(f"identity vectors: {len(feed)} × {encoder.dim} → {path}")
    return torch.from_numpy(out)


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output ``[B,3,S,S]`` in ``[-1,1]`` → ``[B,S,S,3]`` uint8."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()
