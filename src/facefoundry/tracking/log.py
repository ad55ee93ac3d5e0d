"""What a stage logs into its open MLflow run: figures, images, texts (through the products folder),
artifacts, tags, metrics, and the exact data it read (DVC hash, dataset input, recipe params).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from facefoundry.config import flatten
from facefoundry.data.hashing import dvc_dir_hash
from facefoundry.tracking.base import _mlflow
from facefoundry.tracking.products import _logged_product


def log_figure(fig, name: str) -> None:
    """A matplotlib figure as the artifact ``name`` (and a products file, rendered once)."""
    import matplotlib.pyplot as plt

    from facefoundry.plots import save_figure

    if not _logged_product(name, lambda path: save_figure(fig, path)):
        _mlflow().log_figure(fig, name)
    plt.close(fig)


def log_artifact(path: str | Path, folder: str | None = None) -> None:
    """A file (or, for a directory, everything under it) into the active run's artifacts under ``folder``."""
    if Path(path).is_dir():
        _mlflow().log_artifacts(str(path), folder)
    else:
        _mlflow().log_artifact(str(path), folder)


def set_tag(key: str, value: str) -> None:
    _mlflow().set_tag(key, value)


def log_image(image: np.ndarray, name: str) -> None:
    """A uint8 HxWx3 image as the PNG artifact ``name`` (and a products file)."""

    def write(path: Path) -> None:
        import io

        from PIL import Image

        from facefoundry.io import atomic_write_bytes

        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
        atomic_write_bytes(path, buf.getvalue())

    if not _logged_product(name, write):
        _mlflow().log_image(image, name)


def _clean(metrics: dict[str, float]) -> dict[str, float]:
    """MLflow-safe metric names, non-finite values dropped."""
    return {k.replace("@", "_at_"): float(v) for k, v in metrics.items() if np.isfinite(v)}


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    _mlflow().log_metrics(_clean(metrics), step=step)


def log_dataset_version(
    path: str | Path, prefix: str = "dataset", digest: str | None = None, context: str = "training"
) -> str:
    """Name the run's exact data: DVC-hash tags, and an MLflow dataset input (the UI's Dataset column).

    A manifest dataset is logged as its table (path, label, identity, …) with the DVC hash as
    digest and the folder as source; other layouts as a (path, label) table.
    """
    digest = digest or dvc_dir_hash(path)
    mlflow = _mlflow()
    mlflow.set_tag(f"{prefix}.dvc_md5", digest)
    mlflow.set_tag(f"{prefix}.path", str(path))
    import warnings

    try:
        df = _dataset_frame(Path(path))
        with warnings.catch_warnings():  # schema hints about integer columns and source kinds: noise here
            warnings.simplefilter("ignore", UserWarning)
            ds = mlflow.data.from_pandas(
                df, source=str(Path(path).resolve()), name=Path(path).name, digest=digest.removesuffix(".dir")[:36]
            )
            mlflow.log_input(ds, context=context)
    except Exception as exc:  # the data tags above already name the version
        print(f"note: dataset input not logged for {path}: {exc.__class__.__name__}: {exc}", file=sys.stderr)
    return digest


def _dataset_frame(root: Path):
    import pandas as pd

    if (root / "manifest.parquet").is_file():
        cols = ["path", "label", "identity", "source", "width", "height", "sha256"]
        return pd.read_parquet(root / "manifest.parquet", columns=cols)
    from facefoundry.data.sources import open_source

    src = open_source(root)
    return pd.DataFrame({"label": src.labels, "identity": [src.identities[i] for i in src.labels]})


def recipe_params(meta: dict) -> dict[str, Any]:
    """A dataset's generation recipe from its manifest metadata, flattened as ``data.*`` params."""
    gen: Any = meta.get("generator")  # any JSON value (None when unset): meta.get(gen) below is not a dict then
    keep: dict[str, Any] = {
        "generator": gen,
        "num_classes": meta.get("num_classes"),
        "num_images": meta.get("num_images"),
    }
    if isinstance(meta.get(gen), dict):
        keep[gen] = meta[gen]
    flat = flatten(keep, "data.")
    return {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in flat.items() if v is not None}


def log_text(text: str, name: str) -> None:
    """Text as the artifact ``name`` (and a products file)."""
    from facefoundry.io import atomic_write_text

    if not _logged_product(name, lambda path: atomic_write_text(path, text)):
        _mlflow().log_text(text, name)
