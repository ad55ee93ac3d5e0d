"""Feeding images to a training loop so data loading is never the bottleneck.

One feed for every learner: the FR trainer and the generators trained on photos (Vec2Face,
IDSync). Small datasets are decoded once into one uint8 tensor (the embedded default fits in
a few MB); larger ones stream through a ``DataLoader`` with workers. Both yield the same uint8
NHWC batches in the same seeded order. The trainer reads images at their stored size; a
generator may ask for ``resize=True`` to read square crops at its own resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from facefoundry.data.sources import FaceSource
from facefoundry.data.transforms import resize_uint8
from facefoundry.errors import FaceFoundryError


def load_resized(source: FaceSource, i: int, size: int) -> np.ndarray:
    """Image ``i`` as uint8 ``size×size×3`` (aligned crops scale with their template, so resizing is safe)."""
    img = source.load(i)
    if img.shape[0] != img.shape[1]:
        raise FaceFoundryError(f"{source.root}: image {i} is {img.shape[1]}x{img.shape[0]}, aligned faces are square")
    return resize_uint8(img[None], size)[0]


class _Images(Dataset):
    def __init__(self, source: FaceSource, size: int, indices: bool = False, resize: bool = False):
        self.source, self.size, self.indices, self.resize = source, size, indices, resize

    def __len__(self) -> int:
        return len(self.source)

    def load(self, i: int) -> np.ndarray:
        return load_resized(self.source, i, self.size) if self.resize else self.source.load(i, self.size)

    def __getitem__(self, i: int) -> tuple:
        item = (torch.from_numpy(self.load(i)), int(self.source.labels[i]))
        return (*item, i) if self.indices else item


class Feeder:
    """uint8 NHWC batches of a :class:`FaceSource`: decoded once into RAM when they fit ``preload_max_mb``.

    ``rank``/``world`` give each data-parallel process its share of every epoch; ``resize`` reads square
    crops of any stored size at ``size`` (generators), else a stored size other than ``size`` is an error.
    """

    def __init__(
        self,
        source: FaceSource,
        size: int,
        batch_size: int,
        preload_max_mb: int,
        num_workers: int = 0,
        rank: int = 0,
        world: int = 1,
        progress: Callable[[str], None] | None = None,
        resize: bool = False,
    ):
        self.source, self.size, self.batch_size = source, size, batch_size
        self.num_workers, self.rank, self.world, self.resize = num_workers, rank, world, resize
        self.labels = torch.from_numpy(np.asarray(source.labels))
        self._reader = _Images(source, size, resize=resize)
        need_mb = len(source) * size * size * 3 / 2**20
        self.images: torch.Tensor | None = None
        if need_mb <= preload_max_mb:
            buf = torch.empty((len(source), size, size, 3), dtype=torch.uint8)
            for i in range(len(source)):
                buf[i] = torch.from_numpy(self._reader.load(i))
                if progress and (i + 1) % 2000 == 0:
                    progress(f"decoded {i + 1}/{len(source)} images")
            self.images = buf

    def __len__(self) -> int:
        return len(self.source)

    @property
    def preloaded(self) -> bool:
        return self.images is not None

    def steps_per_epoch(self) -> int:
        return (len(self.source) // self.world) // self.batch_size

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC images of the dataset indices ``idx``."""
        if self.images is not None:
            return self.images[idx]
        return torch.stack([torch.from_numpy(self._reader.load(int(i))) for i in idx])

    def epoch(self, seed: int, indices: bool = False) -> Iterator[tuple[torch.Tensor, ...]]:
        """Batches of ``(uint8 NHWC, labels)`` in an order fixed by ``seed`` (drop-last); with ``indices``,
        ``(images, labels, dataset indices)`` so per-image facts (soft labels, identity vectors) can follow."""
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self.source), generator=g)[self.rank :: self.world]
        n = self.steps_per_epoch() * self.batch_size
        order = order[:n]
        if self.images is not None:
            for s in range(0, n, self.batch_size):
                idx = order[s : s + self.batch_size]
                yield (self.images[idx], self.labels[idx], idx) if indices else (self.images[idx], self.labels[idx])
            return
        reader = _Images(self.source, self.size, indices, self.resize)
        loader = DataLoader(
            torch.utils.data.Subset(reader, order.tolist()),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            drop_last=True,
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
        )
        if not indices:
            yield from loader
            return
        for images, labels, idx in loader:
            yield images, labels, idx.long()

    def ordered(self, batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every image in dataset order, ``(uint8 NHWC, dataset indices)`` batches of ``batch`` (the last may be short)."""
        if self.images is not None:
            for s in range(0, len(self.source), batch):
                idx = torch.arange(s, min(s + batch, len(self.source)))
                yield self.images[idx], idx
            return
        loader = DataLoader(
            _Images(self.source, self.size, True, self.resize),
            batch_size=batch,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
        )
        for images, _, idx in loader:
            yield images, idx.long()


def image_size_of(source: FaceSource) -> int:
    first = source.load(0)
    if first.shape[0] != first.shape[1]:
        raise FaceFoundryError(f"{source.root}: images are {first.shape[1]}x{first.shape[0]}, aligned faces are square")
    return int(first.shape[0])


def sample_indices(labels: np.ndarray, rows: int, cols: int, seed: int = 0) -> list[list[int]]:
    """Pick ``cols`` images of each of ``rows`` identities for a sample grid."""
    rng = np.random.default_rng(seed)
    out = []
    for c in rng.permutation(np.unique(labels))[:rows]:
        idx = np.flatnonzero(labels == c)
        out.append(sorted(rng.choice(idx, size=min(cols, len(idx)), replace=False).tolist()))
    return out
