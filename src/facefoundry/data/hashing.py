"""Content hashes of datasets and model folders, as DVC computes them (no DVC import)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def dvc_dir_hash(path: str | Path, ignore: tuple[str, ...] = ()) -> str:
    """The hash DVC gives a directory output (``<md5>.dir``), computed without DVC.

    md5 of the JSON list of ``{"md5", "relpath"}`` entries sorted by path — what
    ``dvc.lock`` records — so a run can name the exact data version it trained on.
    ``ignore``: path components to skip, as ``.dvcignore`` does (e.g. ``__pycache__``).
    """
    root = Path(path)
    if root.is_file():
        return hashlib.md5(root.read_bytes()).hexdigest()
    entries = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and not set(p.relative_to(root).parts) & set(ignore):
            h = hashlib.md5()
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            entries.append({"md5": h.hexdigest(), "relpath": p.relative_to(root).as_posix()})
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"
