"""A README picture of generated datasets: one row per identity, its first images side by side.

    python benchmarks/sample_grid.py outputs/datasets/idsync_real [more datasets] --out docs/idsync_samples.png

Each dataset gives ``--rows`` identities (the first ones: generation order) × ``--cols`` images, labelled
with the dataset's folder name; nothing but generated images (no real photo goes into the repository).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from facefoundry.data.sources import open_source
    from facefoundry.plots import labelled_grid

    ap = argparse.ArgumentParser()
    ap.add_argument("datasets", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    rows, labels = [], []
    for folder in args.datasets:
        src = open_source(folder)
        for c in np.unique(src.labels)[: args.rows]:
            idx = np.flatnonzero(src.labels == c)[: args.cols]
            rows.append([src.load(int(i)) for i in idx])
            labels.append(f"{Path(folder).name} #{int(c)}")
    fig = labelled_grid(rows, labels, args.title)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
