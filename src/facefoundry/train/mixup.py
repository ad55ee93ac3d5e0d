"""SynFace domain mixup in the trainer: a second labelled dataset mixed into every batch.

Per batch, ``X = ψ·X_S + (1 − ψ)·X_R`` and ``Y = ψ·Y_S + (1 − ψ)·Y_R`` with ψ drawn from a grid
(the official code: ``linspace(0, 1.05, 21, endpoint=False)``). The second dataset's identities get
their own label range after the first's (``offset``), so the margin head has ``N_S + N_R`` classes;
soft labels of either dataset (identity mixup) carry through, each scaled by its domain's weight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from facefoundry.config import DomainMixupCfg
from facefoundry.data.manifest import check_identity_counts
from facefoundry.data.sources import FaceSource, open_source
from facefoundry.errors import FaceFoundryError
from facefoundry.models.heads import as_soft
from facefoundry.sampling.mixup import ratio_grid, soft_targets
from facefoundry.train.feed import Feeder, image_size_of


def source_targets(
    source: FaceSource, labels: torch.Tensor, idx: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch's targets: hard labels, or ``([B,2], [B,2])`` soft labels when the dataset records them."""
    if source.mix_labels is None:
        return labels, None
    partner = torch.from_numpy(source.mix_labels)[idx].to(labels.device)
    phi = torch.from_numpy(source.mix_weights)[idx].to(labels.device)
    return soft_targets(labels, partner, phi)


def combine(
    t_s: torch.Tensor, w_s: torch.Tensor | None, t_r: torch.Tensor, w_r: torch.Tensor | None, psi: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``ψ·Y_S + (1 − ψ)·Y_R`` as concatenated soft targets (R's labels already offset)."""
    t_s, w_s = as_soft(t_s, w_s)
    t_r, w_r = as_soft(t_r, w_r)
    return torch.cat([t_s, t_r], 1), torch.cat([psi * w_s, (1 - psi) * w_r.to(w_s.device)], 1)


class DomainMixup:
    """The second domain R: its batches (labels offset by ``offset``) and the per-batch ψ."""

    def __init__(
        self,
        cfg: DomainMixupCfg,
        size: int,
        batch_size: int,
        preload_max_mb: int,
        num_workers: int,
        offset: int,
        seed: int,
        min_images: int,
        log: Callable[[str], None] = print,
        rank: int = 0,
        world: int = 1,
    ):
        assert cfg.dataset is not None
        self.source = open_source(cfg.dataset)
        where = f"train.domain_mixup.dataset {self.source.root}"
        check_identity_counts(self.source.labels, self.source.identities, min_images, where)
        actual = image_size_of(self.source)
        if actual != size:
            raise FaceFoundryError(
                f"{where}: images are {actual}x{actual} but base.image_size is {size}; both "
                "domains must have the same crop size"
            )
        if len(self.source) < batch_size * world:
            raise FaceFoundryError(
                f"{where}: {len(self.source)} images are fewer than one batch (train.batch_size={batch_size})"
            )
        self.grid = ratio_grid(cfg.psi)
        self.offset, self.seed = offset, seed
        # each rank its share of R's order; ψ (self.rng) is drawn alike on every rank: one ψ per global batch
        self.feeder = Feeder(self.source, size, batch_size, preload_max_mb, num_workers, rank, world, progress=log)
        self._batches: Iterator | None = None
        self.rng = np.random.default_rng([seed, 61])
        log(
            f"domain mixup: {self.source.num_classes} identities of {self.source.root} as labels "
            f"[{offset}, {offset + self.source.num_classes}); ψ from {self.grid.tolist()}"
        )

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    def start_epoch(self, epoch: int) -> None:
        """Re-seed ψ draws and R's order per epoch, so a resumed run mixes exactly as an uninterrupted one."""
        self.rng = np.random.default_rng([self.seed, 61, epoch])
        self._batches = self._cycle(epoch)

    def _cycle(self, epoch: int) -> Iterator:
        k = 0
        while True:
            yield from self.feeder.epoch(self.seed * 7919 + 1009 * epoch + k, indices=True)
            k += 1

    def psi(self) -> float:
        return float(self.rng.choice(self.grid))

    def next_batch(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(uint8 NHWC images, targets, weights)`` of R, labels in R's range."""
        if self._batches is None:
            self.start_epoch(0)
        assert self._batches is not None  # start_epoch sets it
        images, labels, idx = next(self._batches)
        labels = labels.to(device)
        targets, weights = source_targets(self.source, labels, idx)
        return images, targets + self.offset, weights
