"""What every generator trained on photos shares: the image feed and the cached per-image identity vectors.

- ``ImageFeed``: uint8 NHWC batches with their dataset indices, decoded once into RAM when small;
- ``identity_vectors``: every training image's unit vector from a frozen encoder, cached on disk by the
  dataset's DVC hash, the encoder spec and the size (a generator's conditioning, PCA and τ filter use them);
- ``to_signed`` / ``to_uint8``: the ``[-1, 1]`` convention of generator networks.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from facefoundry.data.sources import FaceSource
from facefoundry.data.transforms import resize_uint8
from facefoundry.errors import FaceFoundryError
from facefoundry.identity.base import IdentityEncoder
from facefoundry.identity.store import embed_rows, source_keys
from facefoundry.io import atomic_write_bytes, atomic_write_json


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC → float NCHW in ``[-1, 1]``."""
    return images.permute(0, 3, 1, 2).float().div(127.5).sub(1)


# -- data ----------------------------------------------------------------------------------------

def load_resized(source: FaceSource, i: int, size: int) -> np.ndarray:
    """Image ``i`` as uint8 ``size×size×3`` (aligned crops scale with their template, so resizing is safe)."""
    img = source.load(i)
    if img.shape[0] != img.shape[1]:
        raise FaceFoundryError(f"{source.root}: image {i} is {img.shape[1]}x{img.shape[0]}, aligned faces are square")
    return resize_uint8(img[None], size)[0]


class _Images(Dataset):
    def __init__(self, source: FaceSource, size: int):
        self.source, self.size = source, size

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(load_resized(self.source, i, self.size)), i


class ImageFeed:
    """uint8 NHWC batches with their dataset indices: decoded once into RAM when small, else streamed."""

    def __init__(self, source: FaceSource, size: int, batch_size: int, preload_max_mb: int = 2048,
                 num_workers: int = 0):
        self.source, self.size, self.batch_size, self.num_workers = source, size, batch_size, num_workers
        self.images: torch.Tensor | None = None
        if len(source) * size * size * 3 / 2**20 <= preload_max_mb:
            self.images = torch.stack([torch.from_numpy(load_resized(source, i, size)) for i in range(len(source))])

    def __len__(self) -> int:
        return len(self.source)

    def steps_per_epoch(self) -> int:
        return len(self.source) // self.batch_size

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC images of the dataset indices ``idx``."""
        if self.images is not None:
            return self.images[idx]
        return torch.stack([torch.from_numpy(load_resized(self.source, int(i), self.size)) for i in idx])

    def _batches(self, order: torch.Tensor, batch: int, drop_last: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.images is not None:
            stop = len(order) - len(order) % batch if drop_last else len(order)
            for s in range(0, stop, batch):
                idx = order[s:s + batch]
                yield self.images[idx], idx
            return
        loader = DataLoader(torch.utils.data.Subset(_Images(self.source, self.size), order.tolist()),
                            batch_size=batch, num_workers=self.num_workers, drop_last=drop_last,
                            pin_memory=torch.cuda.is_available())
        for imgs, idx in loader:
            yield imgs, idx.long()

    def epoch(self, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled full batches in an order fixed by ``seed``."""
        order = torch.randperm(len(self.source), generator=torch.Generator().manual_seed(seed))
        return self._batches(order, self.batch_size, drop_last=True)

    def ordered(self, batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._batches(torch.arange(len(self.source)), batch, drop_last=False)


# -- identity vectors ----------------------------------------------------------------------------

def identity_vectors(feed: ImageFeed, encoder: IdentityEncoder, cache_dir: Path, dataset_digest: str,
                     batch_size: int = 64, log: Callable[[str], None] = print, progress: bool = True) -> torch.Tensor:
    """Every image's unit identity vector ``[N, dim]`` (CPU), cached on disk beside the model output."""
    spec = encoder.spec()
    path = Path(cache_dir) / f"{cache_key({'data': dataset_digest, 'encoder': spec, 'size': feed.size, 'n': len(feed)})}.npy"
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
    out = embed_rows(lambda i: feed.batch(torch.tensor([i]))[0].numpy(), rows, encoder, batch_size,
                     "identity vectors" if progress else "", source_keys(feed.source, rows) if native else None)
    buf = io.BytesIO()
    np.save(buf, out)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_json(path.with_suffix(".json"), {"dataset_dvc_md5": dataset_digest, "encoder": spec,
                                                  "image_size": feed.size, "images": len(feed)})
    log(f"identity vectors: {len(feed)} × {encoder.dim} → {path}")
    return torch.from_numpy(out)


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output ``[B,3,S,S]`` in ``[-1,1]`` → ``[B,S,S,3]`` uint8."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()
