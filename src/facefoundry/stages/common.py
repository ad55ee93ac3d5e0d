"""Helpers shared by stages: sample grids of a dataset, stage logging."""

from __future__ import annotations

import time

import numpy as np

from facefoundry.data.sources import FaceSource
from facefoundry.plots import image_grid
from facefoundry.progress import write_line
from facefoundry.train.feed import sample_indices


def log(msg: str) -> None:
    """Progress to stderr with a timestamp (stdout stays clean for piping), above any progress bar."""
    write_line(f"[{time.strftime('%H:%M:%S')}] {msg}")


def dataset_grid(source: FaceSource, rows: int = 8, cols: int = 8, seed: int = 0) -> np.ndarray:
    """Rows = identities, columns = variations."""
    picks = sample_indices(source.labels, rows, cols, seed)
    return image_grid([[source.load(i) for i in row] for row in picks])
