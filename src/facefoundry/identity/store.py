"""Each image embedded once per encoder, whichever stage asks: a content-addressed store of identity vectors.

A learned generator's identity vectors, the fusion's identity check, the validate stage's judges and
its leakage references all embed images of the same datasets with the same encoder (the default
pipeline embedded the renders five times, in five processes). The store keys a unit vector by the
image file's sha256 — what a manifest records, so a fused dataset's copies of render images share
their vectors — and keeps one SQLite file per encoder spec and device type under the platform cache
(``$FACEFOUNDRY_CACHE/embeddings``, see :func:`facefoundry.io.cache_dir`).

A vector from the store equals a freshly computed one, bit for bit: store-backed embedding always runs
full batches (the last one padded with copies of its last image) and the batch size is part of the
store's key. Measured why: the dlib port gives the same bits for an image in any batch of 8 or more,
but batches of 1–7 take other kernels (differences of 1e-7), which would make a metric depend on which
stage embedded an image first. The store is a cache, never a source of failure: an unreadable or
locked file means computing again.
Images without a recorded hash (image folders, RecordIO, ``.bin`` benchmarks) are computed each time.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from facefoundry.identity.base import IdentityEncoder
from facefoundry.io import cache_dir
from facefoundry.progress import track

CHUNK = 1024  # images decoded and embedded at a time (bounded memory for large datasets)


class EmbeddingStore:
    """Unit vectors of one encoder (spec, device type, batch size), keyed by image sha256, in one SQLite file."""

    def __init__(self, encoder: IdentityEncoder, batch_size: int, root: Path | None = None):
        spec = json.dumps(
            {**encoder.spec(), "device": encoder.device.type, "batch_size": batch_size}, sort_keys=True, default=str
        )
        key = hashlib.sha256(spec.encode()).hexdigest()[:20]
        self.path = (root or cache_dir("embeddings")) / f"{encoder.name}-{key}.sqlite"
        self.dim = encoder.dim

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")  # sweep trials read and write it side by side
        con.execute("CREATE TABLE IF NOT EXISTS vectors (sha256 TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        return con

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors among ``keys`` (an empty dict when the store cannot be read)."""
        found: dict[str, np.ndarray] = {}
        try:
            with self._connect() as con:
                for s in range(0, len(keys), 500):
                    part = list(keys[s : s + 500])
                    rows = con.execute(
                        f"SELECT sha256, vector FROM vectors WHERE sha256 IN ({','.join('?' * len(part))})", part
                    ).fetchall()
                    for sha, blob in rows:
                        vec = np.frombuffer(blob, np.float32)
                        if vec.shape == (self.dim,):
                            found[sha] = vec
        except sqlite3.Error:
            return {}
        return found

    def put(self, items: dict[str, np.ndarray]) -> None:
        """Store vectors (silently nothing when the store cannot be written)."""
        try:
            with self._connect() as con:
                con.executemany(
                    "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                    [(k, np.ascontiguousarray(v, np.float32).tobytes()) for k, v in items.items()],
                )
        except sqlite3.Error:
            pass


def embed_rows(
    load: Callable[[int], np.ndarray],
    rows: np.ndarray,
    encoder: IdentityEncoder,
    batch_size: int,
    desc: str,
    keys: Sequence[str | None] | None = None,
) -> np.ndarray:
    """Unit vectors ``[len(rows), dim]`` of images ``load(i)`` for ``i`` in ``rows``.

    ``keys``: each row's image sha256 (or None); rows with a key come from the encoder's
    :class:`EmbeddingStore` when it holds them, and the rest are stored once computed.
    """
    rows = np.asarray(rows, dtype=np.int64)
    out = np.zeros((len(rows), encoder.dim), np.float32)
    store = EmbeddingStore(encoder, batch_size) if keys is not None and any(keys) else None
    todo = np.arange(len(rows))
    if store is not None:
        assert keys is not None  # a store only for rows with keys
        known = store.get([k for k in dict.fromkeys(keys) if k])
        hit = np.array([bool(k) and k in known for k in keys], np.bool_)
        for j in np.flatnonzero(hit):
            key = keys[int(j)]
            assert key is not None  # a hit has a key
            out[j] = known[key]
        todo = np.flatnonzero(~hit)
    chunk = batch_size * max(1, CHUNK // batch_size)
    with track(total=len(todo), desc=desc, unit="img", disable=not desc or not len(todo)) as bar:
        for s in range(0, len(todo), chunk):
            part = todo[s : s + chunk]
            images = np.stack([load(int(rows[j])) for j in part])
            if store is not None and len(part) % batch_size:  # full batches only: the same kernels every time
                pad = batch_size - len(part) % batch_size
                images = np.concatenate([images, np.repeat(images[-1:], pad, axis=0)])
            out[part] = encoder.embed(images, batch_size)[: len(part)]
            if store is not None:
                assert keys is not None  # a store only for rows with keys
                store.put({keys[j]: out[j] for j in part if keys[j]})
            bar.update(len(part))
    return out


def source_keys(source, rows: np.ndarray) -> list[str | None]:  # a FaceSource
    """The sha256 each row's image file records in its dataset (None where the format records none)."""
    return [source.expected_sha256(int(i)) for i in rows]
