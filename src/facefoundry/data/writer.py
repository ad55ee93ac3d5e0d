"""Write a manifest dataset atomically: images under ``images/<label>/``, then the manifest."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from facefoundry.data.images import encode_image
from facefoundry.data.manifest import Manifest, write_manifest
from facefoundry.io import atomic_dir


class DatasetWriter:
    """Context manager; the dataset appears at ``out`` only when the block succeeds."""

    def __init__(self, out: str | Path, meta: dict[str, Any], image_format: str = "png"):
        self.out = Path(out)
        self.manifest = Manifest(meta=dict(meta))
        self.fmt = image_format
        self._stack = ExitStack()
        self._tmp: Path | None = None

    def __enter__(self) -> "DatasetWriter":
        self._tmp = self._stack.enter_context(atomic_dir(self.out))
        return self

    def add(self, image: np.ndarray, label: int, identity: str, source: str, params: dict) -> str:
        assert self._tmp is not None, "use DatasetWriter as a context manager"
        rel = f"images/{label:06d}/{len(self.manifest):07d}.{self.fmt}"
        data = encode_image(image, self.fmt)
        dst = self._tmp / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)
        self.manifest.add(rel, label, identity, source, params, data, image.shape[1], image.shape[0])
        return rel

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            write_manifest(self._tmp, self.manifest)
        return self._stack.__exit__(exc_type, exc, tb)
