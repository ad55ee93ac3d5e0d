"""The face dataset format: a folder of aligned images + ``manifest.parquet``.

One row per image (path relative to the folder, integer label, identity name,
source/generator, generation parameters as JSON, width, height, sha256), and, for SynFace's
identity mixup, a soft label: ``mix_label`` (the partner identity, -1 for none) and ``mix_weight``
(φ, the weight of ``label``; the partner gets 1 − φ). Those two columns are written only when some
row has a partner, so a dataset without mixup is byte for byte what it was before. Dataset
facts (class count, image size, generator) live in the parquet schema metadata, so
the trainer reads counts from the data instead of having them typed into a config.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from facefoundry.errors import FaceFoundryError
from facefoundry.io import atomic_write_bytes

MANIFEST = "manifest.parquet"
COLUMNS = ("path", "label", "identity", "source", "params", "width", "height", "sha256")
SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("label", pa.int64()),
        ("identity", pa.string()),
        ("source", pa.string()),
        ("params", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("sha256", pa.string()),
    ]
)
OPTIONAL = ("mix_label", "mix_weight")  # soft labels (identity mixup)
OPTIONAL_SCHEMA = [("mix_label", pa.int64()), ("mix_weight", pa.float64())]


@dataclass
class Manifest:
    """In-memory manifest: column lists plus dataset-level metadata."""

    path: list[str] = field(default_factory=list)
    label: list[int] = field(default_factory=list)
    identity: list[str] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    width: list[int] = field(default_factory=list)
    height: list[int] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)
    mix_label: list[int] = field(default_factory=list)
    mix_weight: list[float] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.mix_label and self.path:  # built from the eight columns only: no soft labels
            self.mix_label, self.mix_weight = [-1] * len(self.path), [1.0] * len(self.path)

    def __len__(self) -> int:
        return len(self.path)

    def add(
        self,
        path: str,
        label: int,
        identity: str,
        source: str,
        params: dict,
        data: bytes,
        width: int,
        height: int,
        mix_label: int = -1,
        mix_weight: float = 1.0,
    ) -> None:
        self.path.append(path)
        self.label.append(int(label))
        self.identity.append(identity)
        self.source.append(source)
        self.params.append(json.dumps(params, sort_keys=True, default=_json_default))
        self.width.append(int(width))
        self.height.append(int(height))
        self.sha256.append(hashlib.sha256(data).hexdigest())
        self.mix_label.append(int(mix_label))
        self.mix_weight.append(float(mix_weight))

    @property
    def has_soft_labels(self) -> bool:
        return any(p >= 0 for p in self.mix_label)

    def row(self, i: int) -> dict:
        """Row ``i`` as a dict of every column (the journal's and fusion's unit)."""
        return {c: getattr(self, c)[i] for c in (*COLUMNS, *OPTIONAL)}

    def append_row(self, row: dict) -> None:
        for c in COLUMNS:
            getattr(self, c).append(row[c])
        self.mix_label.append(int(row.get("mix_label", -1)))
        self.mix_weight.append(float(row.get("mix_weight", 1.0)))

    @property
    def num_classes(self) -> int:
        return int(self.meta.get("num_classes", (max(self.label) + 1) if self.label else 0))

    def row_params(self, i: int) -> dict:
        return json.loads(self.params[i])

    def to_bytes(self) -> bytes:
        if self.has_soft_labels:
            schema = pa.schema([*SCHEMA, *OPTIONAL_SCHEMA])
            table = pa.table({c: getattr(self, c) for c in (*COLUMNS, *OPTIONAL)}, schema=schema)
        else:
            table = pa.table({c: getattr(self, c) for c in COLUMNS}, schema=SCHEMA)
        meta = dict(self.meta)
        meta.setdefault("num_classes", self.num_classes)
        meta["num_images"] = len(self)
        table = table.replace_schema_metadata({"facefoundry": json.dumps(meta, sort_keys=True)})
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return buf.getvalue()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_manifest(folder: str | Path, manifest: Manifest) -> Path:
    out = Path(folder) / MANIFEST
    atomic_write_bytes(out, manifest.to_bytes())
    return out


def read_manifest_meta(folder: str | Path) -> dict[str, Any]:
    """Only a manifest's dataset-level metadata (the parquet footer: no rows are read)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FaceFoundryError(f"{path}: no manifest (expected a FaceFoundry dataset folder)")
    try:
        raw = pq.read_schema(path).metadata or {}
        meta = json.loads(raw.get(b"facefoundry", b"{}"))
    except (pa.ArrowInvalid, OSError, ValueError, UnicodeDecodeError) as exc:
        raise FaceFoundryError(f"{path}: unreadable manifest metadata ({exc.__class__.__name__})") from None
    if not isinstance(meta, dict):
        raise FaceFoundryError(f"{path}: the 'facefoundry' metadata is not a JSON object")
    return meta


def read_manifest(folder: str | Path) -> Manifest:
    """Read and check a manifest: every label within [0, num_classes), no empty dataset."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.exists():
        raise FaceFoundryError(f"{folder}: dataset folder does not exist")
    if not path.is_file():
        raise FaceFoundryError(f"{path}: no manifest (expected a FaceFoundry dataset folder)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise FaceFoundryError(f"{path}: unreadable parquet ({exc})") from None
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise FaceFoundryError(f"{path}: missing columns {missing}")
    present = [c for c in OPTIONAL if c in table.column_names]
    if present and len(present) != len(OPTIONAL):
        raise FaceFoundryError(f"{path}: soft labels need both columns {list(OPTIONAL)}, found only {present}")
    columns = {
        c: _typed_column(table, path, c, t)
        for c, t in [*((f.name, f.type) for f in SCHEMA), *(OPTIONAL_SCHEMA if present else [])]
    }
    try:
        meta = json.loads((table.schema.metadata or {}).get(b"facefoundry", b"{}"))
    except (ValueError, UnicodeDecodeError):
        raise FaceFoundryError(f"{path}: the 'facefoundry' metadata is not JSON") from None
    if not isinstance(meta, dict):
        raise FaceFoundryError(f"{path}: the 'facefoundry' metadata is not a JSON object")
    m = Manifest(**{c: columns[c] for c in COLUMNS}, meta=meta)
    if len(m) == 0:
        raise FaceFoundryError(f"{path}: dataset is empty (manifest has no rows)")
    if present:
        m.mix_label, m.mix_weight = columns["mix_label"], columns["mix_weight"]
    n_cls = meta.get("num_classes", 1)  # absent: Manifest.num_classes derives it from the labels
    if isinstance(n_cls, bool) or not isinstance(n_cls, int) or n_cls < 1:
        raise FaceFoundryError(f"{path}: metadata num_classes={n_cls!r} is not a positive integer")
    labels = np.asarray(m.label)
    n_cls = m.num_classes
    bad = np.flatnonzero((labels < 0) | (labels >= n_cls))
    if bad.size:
        i = int(bad[0])
        raise FaceFoundryError(
            f"{path}: row {i} ({m.path[i]}) has label {m.label[i]} outside [0, {n_cls}) ({bad.size} such rows)"
        )
    if present:
        mix, w = np.asarray(m.mix_label), np.asarray(m.mix_weight, dtype=np.float64)
        bad = np.flatnonzero((mix < -1) | (mix >= n_cls) | (mix == labels) | ~np.isfinite(w) | (w < 0) | (w > 1))
        if bad.size:
            i = int(bad[0])
            raise FaceFoundryError(
                f"{path}: row {i} ({m.path[i]}) has soft label (partner {m.mix_label[i]}, weight {m.mix_weight[i]}); "
                f"the partner must be -1 or another label in [0, {n_cls}) and the weight within [0, 1] "
                f"({bad.size} such rows)"
            )
    return m


def _typed_column(table: pa.Table, path: Path, name: str, kind: pa.DataType) -> list:
    """Column ``name`` as ``kind`` (a safe cast: no overflow, no lossy float → int), no nulls: else one line."""
    col = table.column(name)
    if col.null_count:
        i = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise FaceFoundryError(f"{path}: row {i} has no {name} ({col.null_count} such rows)")
    try:
        return col.cast(kind, safe=True).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise FaceFoundryError(f"{path}: column {name} holds {col.type}, expected {kind}") from None


def check_identity_counts(
    labels: np.ndarray, identities: list[str], minimum: int, where: str, setting: str = "train.min_images_per_identity"
) -> None:
    """Verification needs positives: every identity must have at least ``minimum`` images."""
    counts = np.bincount(np.asarray(labels), minlength=len(identities))
    few = np.flatnonzero(counts < minimum)
    if few.size:
        c = int(few[0])
        raise FaceFoundryError(
            f"{where}: identity {identities[c]!r} (label {c}) has {int(counts[c])} image(s); at least "
            f"{minimum} are needed ({setting}; {few.size} such identities)"
        )
