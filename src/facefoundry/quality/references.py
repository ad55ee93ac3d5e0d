"""The reference sets a dataset's identities are checked against for leakage: the benchmarks and other sets named
in ``quality.leakage.references``, and the real photos its generator learnt from (never a generated set: a
generator trained on renders cannot leak a real person). Their judge vectors are cached by path, size and mtime."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np

from facefoundry.data.sources import open_source
from facefoundry.errors import FaceFoundryError
from facefoundry.identity.base import IdentityEncoder
from facefoundry.identity.store import embed_rows, source_keys
from facefoundry.io import atomic_write_bytes, cache_dir, read_json


def _key(parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _stamp(ref: str | Path) -> list:
    """What identifies a reference's content cheaply: its path, and the size and mtime of its file (a .bin) or
    of its manifest."""
    ref = Path(ref)
    stamp = ref / "manifest.parquet" if (ref / "manifest.parquet").is_file() else ref
    st = stamp.stat() if stamp.exists() else None
    return [str(ref.resolve()), st.st_size if st else None, st.st_mtime_ns if st else None]


def reference_vectors(
    ref: str | Path, encoder: IdentityEncoder, max_images: int, batch_size: int, seed: int = 0
) -> np.ndarray:
    """Unit judge vectors of a reference set: every image of a verification ``.bin`` (both sides of every pair)
    or of a dataset folder (a random ``max_images`` beyond that). Cached by path, size and mtime."""
    ref = Path(ref)
    if not ref.exists():
        raise FaceFoundryError(f"{ref}: reference set does not exist (quality.leakage.references / quality.reference)")
    key = _key([_stamp(ref), encoder.spec(), max_images, seed])
    path = cache_dir("quality") / f"reference-{key}.npy"
    if path.is_file():
        try:
            return np.load(path)
        except (OSError, ValueError):
            pass
    rng = np.random.default_rng(seed)
    if ref.is_file():
        from facefoundry.verification.binfile import read_bin

        images = read_bin(ref).images
        rows = (
            np.arange(len(images))
            if len(images) <= max_images
            else np.sort(rng.choice(len(images), max_images, replace=False))
        )
        emb = embed_rows(lambda i: images[i], rows, encoder, batch_size, f"judge {encoder.name} on {ref.name}")
    else:
        src = open_source(ref)
        rows = (
            np.arange(len(src)) if len(src) <= max_images else np.sort(rng.choice(len(src), max_images, replace=False))
        )
        emb = embed_rows(
            src.load, rows, encoder, batch_size, f"judge {encoder.name} on {ref.name}", source_keys(src, rows)
        )
    buf = io.BytesIO()
    np.save(buf, emb)
    with contextlib.suppress(OSError):
        atomic_write_bytes(path, buf.getvalue())
    return emb


def training_photos(folder: str | Path) -> list[tuple[str | None, str]]:
    """(scope, photos) the dataset's generator was trained on, when its manifest names a model folder that
    records them and they are real photos (a generator trained on renders cannot leak a real person): scope None
    (every identity). For a fused dataset, each source's, scoped to the identities of
    that source: the renders the toy Vec2Face learnt from are not a leak when they are fused beside it."""
    from facefoundry.data.manifest import read_manifest

    try:
        meta = read_manifest(folder).meta
    except FaceFoundryError:
        return []
    if meta.get("generator") == "fusion":
        return [
            (name, photos)
            for name, s in (meta.get("fusion", {}).get("sources") or {}).items()
            if Path(s["path"]).is_dir()
            for _, photos in training_photos(s["path"])
        ]
    model = meta.get("model")
    if not model or not Path(model).is_dir():
        return []
    for index in sorted(Path(model).glob("*_model.json")):
        dataset = read_json(index).get("dataset")
        if dataset and Path(dataset).exists():
            return [] if _generated(dataset) else [(None, str(dataset))]
    return []


def _generated(dataset: str | Path) -> bool:
    """A dataset another generator made (renders, a fusion…): no real person in it can leak. Aligned photos
    (``align``) and folders without a manifest count as real."""
    from facefoundry.data.manifest import read_manifest

    try:
        made_by = read_manifest(dataset).meta.get("generator")
    except FaceFoundryError:
        return False
    return isinstance(made_by, str) and made_by != "align"
