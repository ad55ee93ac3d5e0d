"""Feeding images to the trainer so data loading is never the bottleneck.

Small datasets are decoded once into one uint8 tensor (the embedded default fits in
a few MB); larger ones stream through a ``DataLoader`` with workers. Both yield the
same uint8 NHWC batches in the same seeded order.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from facefoundry.data.sources import FaceSource
from facefoundry.errors import FaceFoundryError


class _Images(Dataset):
    def __init__(self, source: FaceSource, size: int, indices: bool = False):
        self.source, self.size, self.indices = source, size, indices

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple:
        item = (torch.from_numpy(self.source.load(i, self.size)), int(self.source.labels[i]))
        return (*item, i) if self.indices else item


class Feeder:
    def __init__(self, source: FaceSource, size: int, batch_size: int, preload_max_mb: int,
                 num_workers: int = 0, rank: int = 0, world: int = 1, progress=None):  # noqa: ANN001
        self.source, self.size, self.batch_size = source, size, batch_size
        self.num_workers, self.rank, self.world = num_workers, rank, world
        self.labels = torch.from_numpy(source.labels)
        need_mb = len(source) * size * size * 3 / 2**20
        self.images: torch.Tensor | None = None
        if need_mb <= preload_max_mb:
            buf = torch.empty((len(source), size, size, 3), dtype=torch.uint8)
            for i in range(len(source)):
                buf[i] = torch.from_numpy(source.load(i, size))
                if progress and (i + 1) % 2000 == 0:
                    progress(f"decoded {i + 1}/{len(source)} images")
            self.images = buf

    @property
    def preloaded(self) -> bool:
        return self.images is not None

    def steps_per_epoch(self) -> int:
        return (len(self.source) // self.world) // self.batch_size

    def epoch(self, seed: int, indices: bool = False) -> Iterator[tuple[torch.Tensor, ...]]:
        """Batches of ``(uint8 NHWC, labels)`` in an order fixed by ``seed`` (drop-last); with ``indices``,
        ``(images, labels, dataset indices)`` so per-image facts (soft labels) can follow the batch."""
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self.source), generator=g)[self.rank::self.world]
        n = self.steps_per_epoch() * self.batch_size
        order = order[:n]
        if self.images is not None:
            for s in range(0, n, self.batch_size):
                idx = order[s:s + self.batch_size]
                yield (self.images[idx], self.labels[idx], idx) if indices else (self.images[idx], self.labels[idx])
            return
        loader = DataLoader(torch.utils.data.Subset(_Images(self.source, self.size, indices), order.tolist()),
                            batch_size=self.batch_size, num_workers=self.num_workers, drop_last=True,
                            persistent_workers=False, pin_memory=torch.cuda.is_available())
        yield from loader


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
