"""Figures people would rather look at than numbers: grids, ROC curves, histograms, leaderboards."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def image_grid(rows: list[list[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Tile HxWx3 uint8 images: one row per identity, one column per variation."""
    h, w = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    grid = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y:y + h, x:x + w] = im
    return grid


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray, float]]):  # noqa: ANN201
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(np.maximum(fpr, 1e-5), tpr, label=f"{name} (AUC {auc:.3f})")
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def score_histogram(name: str, pos: np.ndarray, neg: np.ndarray, threshold: float | None = None,  # noqa: ANN201
                    xlabel: str = "squared distance of unit embeddings (lower = more similar)"):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    bins = np.linspace(min(pos.min(), neg.min()), max(pos.max(), neg.max()), 50)
    ax.hist(pos, bins, alpha=0.6, label="same identity", color="tab:green", density=True)
    ax.hist(neg, bins, alpha=0.6, label="different identity", color="tab:red", density=True)
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label="10-fold threshold")
    ax.set_xlabel(xlabel)
    ax.set_title(name)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def table_figure(title: str, header: list[str], rows: list[list[str]]):  # noqa: ANN201
    fig, ax = plt.subplots(figsize=(min(16, 1.6 + 1.5 * len(header)), 0.8 + 0.32 * (len(rows) + 1)))
    ax.axis("off")
    tab = ax.table(cellText=rows or [["—"] * len(header)], colLabels=header, loc="center", cellLoc="left")
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    tab.auto_set_column_width(list(range(len(header))))
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def curve_figure(title: str, series: dict[str, list[float]], xlabel: str = "epoch"):  # noqa: ANN201
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, ys in series.items():
        ax.plot(range(1, len(ys) + 1), ys, label=name)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
