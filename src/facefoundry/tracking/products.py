"""The products folder of the stage run in progress: what a person looks at (figures, images, texts) is
written there first, deterministically, and then logged to MLflow as that file, so DVC recreates what
MLflow shows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from facefoundry.tracking.base import _mlflow

_PRODUCTS: list[Path] = []  # the products folder of the stage run in progress (innermost last)


@contextlib.contextmanager
def _products_at(folder: str | Path | None) -> Iterator[None]:
    """Make ``folder`` the active stage's products folder, emptied first (its files are derived, never work)."""
    if folder is None:
        yield
        return
    import shutil

    folder = Path(folder)
    if folder.is_dir():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _PRODUCTS.append(folder)
    try:
        yield
    finally:
        _PRODUCTS.remove(folder)


def products_dir() -> Path | None:
    """The products folder of the stage run in progress, if it has one."""
    return _PRODUCTS[-1] if _PRODUCTS else None


def _logged_product(name: str, write: Callable[[Path], None]) -> bool:
    """Write ``name`` into the products folder with ``write(path)`` and log that file; False without a folder."""
    folder = products_dir()
    if folder is None:
        return False
    path = folder / name
    write(path)
    parent = Path(name).parent.as_posix()
    _mlflow().log_artifact(str(path), None if parent == "." else parent)
    return True
