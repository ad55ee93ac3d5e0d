"""insightface/MXNet RecordIO (``train.rec`` + ``train.idx``) without MXNet.

Layout: each record is ``magic(u32) | lrecord(u32) | payload | pad to 4 bytes`` where
``lrecord`` holds the payload length in its low 29 bits. A payload is an ``IRHeader``
(``flag u32, label f32, id u64, id2 u64``) followed, when ``flag > 0``, by ``flag``
float32 labels, then the encoded image. insightface's record 0 is a header whose
labels give ``(first identity record, end of identity records)``: images are records
``1 .. label[0]-1``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from facefoundry.errors import FaceFoundryError
from facefoundry.io import atomic_write_bytes, atomic_write_text

MAGIC = 0xCED7230A
_HEADER = struct.Struct("<IfQQ")
_LEN_MASK = (1 << 29) - 1


def pack_record(labels: float | list[float], payload: bytes, rec_id: int = 0) -> bytes:
    """MXNet ``recordio.pack``: a scalar label uses flag 0, a vector sets flag = len."""
    if isinstance(labels, (list, tuple, np.ndarray)):
        arr = np.asarray(labels, dtype="<f4")
        head = _HEADER.pack(len(arr), 0.0, rec_id, 0) + arr.tobytes()
    else:
        head = _HEADER.pack(0, float(labels), rec_id, 0)
    return head + payload


def unpack_record(record: bytes) -> tuple[np.ndarray, bytes]:
    flag, label, _, _ = _HEADER.unpack_from(record)
    offset = _HEADER.size
    if flag > 0:
        labels = np.frombuffer(record, dtype="<f4", count=flag, offset=offset).copy()
        offset += 4 * flag
    else:
        labels = np.array([label], dtype=np.float32)
    return labels, record[offset:]


class RecordIOReader:
    """Random access to an indexed ``.rec`` via its ``.idx`` (offsets of each record)."""

    def __init__(self, rec_path: str | Path, idx_path: str | Path):
        self.rec_path, self.idx_path = Path(rec_path), Path(idx_path)
        for p in (self.rec_path, self.idx_path):
            if not p.is_file():
                raise FaceFoundryError(f"{p}: RecordIO file does not exist")
        self.offsets: dict[int, int] = {}
        for n, line in enumerate(self.idx_path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                key, off = line.split("\t")
                self.offsets[int(key)] = int(off)
            except ValueError:
                raise FaceFoundryError(f"{self.idx_path}: line {n} is not 'index<TAB>offset'") from None
        self._fh = open(self.rec_path, "rb")  # noqa: SIM115 - kept open for random access

    def read(self, key: int) -> bytes:
        if key not in self.offsets:
            raise FaceFoundryError(f"{self.idx_path}: no record {key}")
        self._fh.seek(self.offsets[key])
        head = self._fh.read(8)
        if len(head) < 8:
            raise FaceFoundryError(f"{self.rec_path}: truncated at record {key}")
        magic, lrec = struct.unpack("<II", head)
        if magic != MAGIC:
            raise FaceFoundryError(f"{self.rec_path}: bad magic at record {key} (not a RecordIO file?)")
        length = lrec & _LEN_MASK
        data = self._fh.read(length)
        if len(data) < length:
            raise FaceFoundryError(f"{self.rec_path}: truncated at record {key}")
        return data

    def close(self) -> None:
        self._fh.close()

    def __getstate__(self) -> dict:  # DataLoader workers reopen the file
        state = self.__dict__.copy()
        del state["_fh"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._fh = open(self.rec_path, "rb")  # noqa: SIM115


def write_recordio(folder: str | Path, items: list[tuple[int, bytes]], image_size: int) -> None:
    """Write ``(label, encoded image)`` items in insightface's layout (+ ``property``).

    Images are grouped by label so identity records (ranges of image records) can
    be written after them, exactly as insightface's ``im2rec`` tooling lays it out.
    """
    folder = Path(folder)
    items = sorted(items, key=lambda x: x[0])
    labels = sorted({lab for lab, _ in items})
    n = len(items)
    ranges: dict[int, list[int]] = {}
    for i, (lab, _) in enumerate(items, start=1):
        ranges.setdefault(lab, [i, i + 1])[1] = i + 1
    records: list[bytes] = [pack_record([n + 1, n + 1 + len(labels)], b"")]
    records += [pack_record(float(lab), img, i) for i, (lab, img) in enumerate(items, start=1)]
    records += [pack_record([float(s), float(e)], b"") for s, e in (ranges[lab] for lab in labels)]
    blob, idx_lines, offset = bytearray(), [], 0
    for key, payload in enumerate(records):
        pad = (-len(payload)) % 4
        chunk = struct.pack("<II", MAGIC, len(payload)) + payload + b"\x00" * pad
        idx_lines.append(f"{key}\t{offset}")
        blob += chunk
        offset += len(chunk)
    atomic_write_bytes(folder / "train.rec", bytes(blob))
    atomic_write_text(folder / "train.idx", "\n".join(idx_lines) + "\n")
    atomic_write_text(folder / "property", f"{len(labels)},{image_size},{image_size}\n")
