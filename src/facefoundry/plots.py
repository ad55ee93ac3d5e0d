"""Figures people would rather look at than numbers: grids, ROC curves, histograms, leaderboards."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

if TYPE_CHECKING:
    from matplotlib.transforms import Bbox


def image_grid(rows: list[list[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Tile HxWx3 uint8 images: one row per identity, one column per variation."""
    h, w = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    grid = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y : y + h, x : x + w] = im
    return grid


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray, float]]):
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


def score_histogram(
    name: str,
    pos: np.ndarray,
    neg: np.ndarray,
    threshold: float | None = None,
    xlabel: str = "squared distance of unit embeddings (lower = more similar)",
):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    bins = np.linspace(min(pos.min(), neg.min()), max(pos.max(), neg.max()), 50)
    edges = cast("Sequence[float]", bins)  # matplotlib takes an array of bin edges; its stub says Sequence only
    ax.hist(pos, edges, alpha=0.6, label="same identity", color="tab:green", density=True)
    ax.hist(neg, edges, alpha=0.6, label="different identity", color="tab:red", density=True)
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label="10-fold threshold")
    ax.set_xlabel(xlabel)
    ax.set_title(name)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def table_figure(title: str, header: list[str], rows: list[list[str]], caption: str = "", shaded: Sequence[int] = ()):
    """A table sized to its text (no blank margins): column widths follow the longest cell. ``caption`` may have
    several lines (each gets its height); ``shaded``: indices of body rows given a tint (the leaderboard's ties
    with the top row)."""
    body = rows or [["—"] * len(header)]
    chars = [max(len(str(c)) for c in col) + 2 for col in zip(header, *body)]
    width = max(4.0, min(18.0, 0.2 + 0.068 * sum(chars)))
    if caption:  # wrapped to the figure's width (about 17 characters an inch at 7 pt)
        caption = "\n".join(textwrap.fill(line, max(40, int(width * 17))) for line in caption.split("\n"))
    lines = caption.count("\n") + 1 if caption else 0
    top, cap, table_h = (0.35 if title else 0.05), (0.18 + 0.12 * lines if caption else 0.05), 0.22 * (len(body) + 1)
    height = top + table_h + cap
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0.01, cap / height, 0.98, table_h / height))
    ax.axis("off")
    tab = ax.table(
        cellText=body,
        colLabels=header,
        cellLoc="left",
        bbox=cast("Bbox", (0, 0, 1, 1)),  # matplotlib takes (x, y, w, h) bounds too; its stub says Bbox only
        colWidths=[c / sum(chars) for c in chars],
    )
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    for (r, _), cell in tab.get_celld().items():
        cell.set_linewidth(0.3)
        if r == 0:
            cell.set_facecolor("#e8e8e8")
            cell.set_text_props(weight="bold")
        elif r - 1 in shaded:
            cell.set_facecolor("#fff4d6")
    if title:
        fig.text(0.5, 1 - 0.08 / height, title, fontsize=10, ha="center", va="top")
    if caption:
        fig.text(0.01, 0.06 / height, caption, fontsize=7, va="bottom")
    return fig


def curve_figure(title: str, series: dict[str, list[float]], xlabel: str = "epoch"):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, ys in series.items():
        ax.plot(range(1, len(ys) + 1), ys, label=name)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def training_figure(loss: list[float], accuracy: list[float], title: str = "training"):
    """Loss (left axis) and train accuracy (right axis, 0–1) per epoch: two scales, two axes."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    x = range(1, len(loss) + 1)
    ax.plot(x, loss, color="tab:blue", label="loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss", color="tab:blue")
    ax.tick_params(axis="y", labelcolor="tab:blue")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(x, accuracy, color="tab:orange", label="train accuracy")
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("train accuracy", color="tab:orange")
    ax2.tick_params(axis="y", labelcolor="tab:orange")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def labelled_grid(
    rows: list[list[np.ndarray]],
    row_labels: list[str],
    title: str = "",
    col_labels: list[str] | None = None,
    cell: float = 0.9,
):
    """An image grid with a label per row (and optionally per column): what each row *is*."""
    nrow, ncol = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.6 + cell * ncol, 0.4 + cell * nrow), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(ncol):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j < len(row):
                ax.imshow(row[j])
            if j == 0:
                ax.set_ylabel(row_labels[i], rotation=0, ha="right", va="center", fontsize=8)
            if col_labels and i == 0 and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.3)
    return fig


def figure_png(fig, dpi: int = 100) -> bytes:
    """The figure as PNG bytes with no timestamp or version metadata (the same figure, the same bytes); closes it."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def save_figure(fig, path, dpi: int = 100) -> None:
    """:func:`figure_png` written atomically to ``path`` (git, DVC)."""
    from pathlib import Path

    from facefoundry.io import atomic_write_bytes

    atomic_write_bytes(Path(path), figure_png(fig, dpi))


def count_histogram(title: str, counts: np.ndarray, xlabel: str = "images per identity"):
    """How many identities have how many images (a bar per count when few distinct counts)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    counts = np.asarray(counts)
    values, freq = np.unique(counts, return_counts=True)
    if len(values) <= 40:
        ax.bar(values, freq, width=0.8, color="tab:blue")
    else:
        ax.hist(counts, 40, color="tab:blue")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("identities")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def centre_map(
    title: str,
    centres: np.ndarray,
    groups: list[str],
    pairs: Sequence[tuple[int, int]] = (),
    marked: Sequence[int] = (),
    marked_label: str = "flagged",
):
    """2-D PCA map of identity centres, one colour per group (e.g. the source generator); ``pairs`` (indices)
    are joined by a line (e.g. cross-source overlaps), ``marked`` ringed (e.g. leaked identities)."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    x = np.asarray(centres, dtype=np.float64)
    if len(x) >= 2:
        x = x - x.mean(0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        xy = x @ vt[:2].T if vt.shape[0] >= 2 else np.c_[x @ vt[:1].T, np.zeros(len(x))]
    else:
        xy = np.zeros((len(x), 2))
    for i, j in pairs:
        ax.plot(xy[[i, j], 0], xy[[i, j], 1], color="k", lw=0.6, alpha=0.6)
    for g in sorted(set(groups)):
        sel = np.array([k for k, v in enumerate(groups) if v == g], dtype=int)
        ax.scatter(xy[sel, 0], xy[sel, 1], s=10, alpha=0.75, label=f"{g} ({len(sel)})")
    if len(marked):
        m = np.asarray(marked, dtype=int)
        ax.scatter(xy[m, 0], xy[m, 1], s=60, facecolors="none", edgecolors="red", label=marked_label)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def pareto_figure(
    points: Sequence[tuple[str, float, float]],
    front: Sequence[tuple[str, float, float]],
    title: str = "accuracy vs cost",
    ylabel: str = "accuracy",
    xlabel: str = "total cost (seconds: generator training + generation + FR training)",
    caption: str = "",
):
    """Score against cost on a log x axis: ``points`` are (label, cost, score) of every row with both, in grey;
    ``front`` (cheapest first) are the non-dominated ones, connected and labelled."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    on = {(lab, c, s) for lab, c, s in front}
    rest = [p for p in points if p not in on]
    if rest:
        ax.scatter([p[1] for p in rest], [p[2] for p in rest], color="0.65", s=22, label="dominated", zorder=2)
    if front:
        xs, ys = [p[1] for p in front], [p[2] for p in front]
        ax.plot(xs, ys, "-o", color="tab:blue", ms=6, lw=1.5, label="Pareto front", zorder=3)
        for lab, c, s in front:
            ax.annotate(lab, (c, s), textcoords="offset points", xytext=(5, 5), fontsize=8, color="tab:blue")
    ax.set_xscale("log")
    ax.margins(x=0.12, y=0.1)  # room for the labels at the ends
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    if caption:
        wrapped = textwrap.fill(caption, 110)
        fig.text(0.01, 0.01, wrapped, fontsize=7, va="bottom")
        fig.tight_layout(rect=(0, 0.02 + 0.035 * (wrapped.count("\n") + 1), 1, 1))
    else:
        fig.tight_layout()
    return fig
