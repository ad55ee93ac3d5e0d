"""Uniform read access to the three dataset layouts the trainer accepts.

``open_source`` picks the reader from what the folder holds: ``manifest.parquet``
(FaceFoundry), ``train.rec``/``train.idx`` (insightface RecordIO, as CASIA-WebFace,
WebFace and DigiFace ship), or one subfolder of images per identity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facefoundry.data.images import decode_image, read_image
from facefoundry.data.manifest import MANIFEST, read_manifest
from facefoundry.data.recordio import RecordIOReader, unpack_record
from facefoundry.errors import FaceFoundryError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class FaceSource:
    """Indexable images with integer labels; ``load(i)`` returns HxWx3 uint8 RGB."""

    root: Path
    labels: np.ndarray
    identities: list[str]  # name of each class, indexed by label
    kind: str
    # SynFace soft labels (identity mixup), per image: the partner label (-1: none) and the own label's weight φ
    mix_labels: np.ndarray | None = None
    mix_weights: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.identities)

    def load(self, i: int, size: int | None = None) -> np.ndarray:
        raise NotImplementedError

    def raw(self, i: int) -> tuple[bytes, str]:
        """Image ``i`` as stored (encoded bytes) and the name errors use for it; OSError when unreadable."""
        raise NotImplementedError

    def expected_sha256(self, i: int) -> str | None:
        """The hash the dataset records for image ``i``, when its format records one."""
        return None

    def name(self, i: int) -> str:
        """Where image ``i`` lives inside the dataset (for messages and provenance)."""
        return self.raw(i)[1]

    def describe(self) -> dict:
        return {"kind": self.kind, "root": str(self.root), "images": len(self), "identities": self.num_classes}


class ManifestSource(FaceSource):
    kind = "manifest"

    def __init__(self, root: Path):
        self.root = root
        self.manifest = read_manifest(root)
        self.labels = np.asarray(self.manifest.label, dtype=np.int64)
        names = dict(zip(self.manifest.label, self.manifest.identity))
        self.identities = [names.get(c, f"class_{c}") for c in range(self.manifest.num_classes)]
        if self.manifest.has_soft_labels:
            self.mix_labels = np.asarray(self.manifest.mix_label, dtype=np.int64)
            self.mix_weights = np.asarray(self.manifest.mix_weight, dtype=np.float64)

    def load(self, i: int, size: int | None = None) -> np.ndarray:
        return read_image(self.root / self.manifest.path[i], size)

    def raw(self, i: int) -> tuple[bytes, str]:
        return (self.root / self.manifest.path[i]).read_bytes(), self.name(i)

    def name(self, i: int) -> str:
        return str(self.manifest.path[i])

    def expected_sha256(self, i: int) -> str | None:
        return str(self.manifest.sha256[i])


class FolderSource(FaceSource):
    kind = "folder"

    def __init__(self, root: Path):
        self.root = root
        dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        paths, labels, names = [], [], []
        for d in dirs:
            files = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_EXTS)
            if files:
                names.append(d.name)
                paths += files
                labels += [len(names) - 1] * len(files)
        if not paths:
            raise FaceFoundryError(f"{root}: dataset is empty (no identity subfolders with images)")
        self.paths = paths
        self.labels = np.asarray(labels, dtype=np.int64)
        self.identities = names

    def load(self, i: int, size: int | None = None) -> np.ndarray:
        return read_image(self.paths[i], size)

    def raw(self, i: int) -> tuple[bytes, str]:
        return self.paths[i].read_bytes(), self.name(i)

    def name(self, i: int) -> str:
        return self.paths[i].relative_to(self.root).as_posix()


class RecordIOSource(FaceSource):
    kind = "recordio"

    def __init__(self, root: Path):
        self.root = root
        self.reader = RecordIOReader(root / "train.rec", root / "train.idx")
        head, _ = unpack_record(self.reader.read(0))
        if len(head) >= 2 and head[0] > 0:
            self.keys = list(range(1, int(head[0])))
        else:  # a plain indexed .rec: every record is an image
            self.keys = sorted(self.reader.offsets)
        labels = [int(unpack_record(self.reader.read(k))[0][0]) for k in self.keys]
        if not labels:
            raise FaceFoundryError(f"{root / 'train.rec'}: dataset is empty (no image records)")
        self.labels = np.asarray(labels, dtype=np.int64)
        n_cls = int(self.labels.max()) + 1
        prop = root / "property"
        if prop.is_file():
            n_cls = int(prop.read_text().split(",")[0])
            if self.labels.min() < 0 or self.labels.max() >= n_cls:
                raise FaceFoundryError(
                    f"{root / 'train.rec'}: label {int(self.labels.max())} outside [0, {n_cls}) declared in {prop}"
                )
        self.identities = [f"id_{c:06d}" for c in range(n_cls)]

    def load(self, i: int, size: int | None = None) -> np.ndarray:
        key = self.keys[i]
        _, payload = unpack_record(self.reader.read(key))
        return decode_image(payload, f"{self.root / 'train.rec'}#record{key}", size)

    def raw(self, i: int) -> tuple[bytes, str]:
        return unpack_record(self.reader.read(self.keys[i]))[1], self.name(i)

    def name(self, i: int) -> str:
        return f"train.rec#record{self.keys[i]}"


class MemorySource(FaceSource):
    """Another source whose images were decoded once and are held in RAM (``load`` copies nothing).

    The validate stage checks every file, hashes it, judges identities and computes perceptual hashes;
    with this view each image is decoded once for all of them."""

    def __init__(self, base: FaceSource, images: list[np.ndarray]):
        if len(images) != len(base):
            raise ValueError(f"{len(images)} decoded images for a source of {len(base)}")
        self.base, self.images = base, images
        self.root, self.labels, self.identities, self.kind = base.root, base.labels, base.identities, base.kind
        self.mix_labels, self.mix_weights = base.mix_labels, base.mix_weights
        if hasattr(base, "manifest"):
            self.manifest = base.manifest

    def load(self, i: int, size: int | None = None) -> np.ndarray:
        image = self.images[i]
        return image if size is None or image.shape[0] == size else self.base.load(i, size)

    def raw(self, i: int) -> tuple[bytes, str]:
        return self.base.raw(i)

    def expected_sha256(self, i: int) -> str | None:
        return self.base.expected_sha256(i)

    def name(self, i: int) -> str:
        return self.base.name(i)


def open_source(path: str | Path) -> FaceSource:
    root = Path(path)
    if not root.exists():
        raise FaceFoundryError(f"{root}: dataset path does not exist")
    if (root / MANIFEST).exists():
        return ManifestSource(root)
    if (root / "train.rec").exists():
        return RecordIOSource(root)
    if root.is_dir():
        return FolderSource(root)
    raise FaceFoundryError(f"{root}: not a dataset (no {MANIFEST}, train.rec or identity subfolders)")
