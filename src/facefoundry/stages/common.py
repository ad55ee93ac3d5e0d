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


SETTINGS = ("sigma",)  # per-image generation settings a grid can lay out in columns (Vec2Face's σ mixture)


def setting_grid(source: FaceSource, rows: int = 8, seed: int = 0, max_cols: int = 8):
    """Identities × one image per generation setting (σ), labelled, or None when the dataset records none."""
    manifest = getattr(source, "manifest", None)
    if manifest is None or not len(manifest):
        return None
    first = manifest.row_params(0)
    key = next((k for k in SETTINGS if k in first), None)
    if key is None:
        return None
    from facefoundry.plots import labelled_grid

    values = [manifest.row_params(i).get(key) for i in range(len(manifest))]
    settings = sorted({v for v in values if v is not None})[:max_cols]
    labels = np.asarray(source.labels)
    rng = np.random.default_rng(seed)
    grid, names = [], []
    for c in rng.permutation(np.unique(labels))[:rows]:
        idx = np.flatnonzero(labels == c)
        row = [next((int(i) for i in idx if values[i] == s), None) for s in settings]
        grid.append([source.load(i) if i is not None else np.zeros_like(source.load(int(idx[0]))) for i in row])
        names.append(str(source.identities[int(c)]) if hasattr(source, "identities") else str(c))
    symbol = {"sigma": "σ"}.get(key, key)
    return labelled_grid(grid, names, f"one image per {symbol}", [f"{symbol} = {s:g}" for s in settings])
