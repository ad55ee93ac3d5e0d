"""Write a manifest dataset atomically: images under ``images/<label>/``, then the manifest.

With a ``resume_key`` the work goes to a stable ``.<name>.partial`` folder beside the
output and every finished image is journalled, so a crashed or interrupted generation
continues where it stopped (when the key — the generation settings — is unchanged).
Either way the dataset appears at ``out`` only once it is complete.
"""

from __future__ import annotations

import json
import shutil
from contextlib import ExitStack
from pathlib import Path
from typing import Any, ClassVar, TextIO

import numpy as np

from facefoundry.data.images import encode_image
from facefoundry.data.manifest import COLUMNS, OPTIONAL, Manifest, write_manifest
from facefoundry.errors import FaceFoundryError, note_saved, write_error_message
from facefoundry.io import atomic_dir, atomic_write_json, swap_into_place

JOURNAL, RESUME = "rows.jsonl", "resume.json"


class DatasetWriter:
    """Context manager; ``done`` tells a resumable generator how many images already exist.

    ``DatasetWriter.last`` holds what the latest writer of this process resumed and wrote, so a
    stage reports the throughput of this invocation's work only.
    """

    last: ClassVar[dict[str, int]] = {}

    def __init__(self, out: str | Path, meta: dict[str, Any], image_format: str = "png", resume_key: str | None = None):
        self.out = Path(out)
        self.manifest = Manifest(meta=dict(meta))
        self.fmt = image_format
        self.resume_key = resume_key
        self._stack = ExitStack()
        self._tmp: Path | None = None
        self._journal: TextIO | None = None

    @property
    def done(self) -> int:
        return len(self.manifest)

    def __enter__(self) -> DatasetWriter:
        if self.resume_key is None:
            self._tmp = self._stack.enter_context(atomic_dir(self.out))
            return self
        self._tmp = self.out.parent / f".{self.out.name}.partial"
        state = self._tmp / RESUME
        if state.is_file() and json.loads(state.read_text()).get("key") == self.resume_key:
            for line in (self._tmp / JOURNAL).read_text().splitlines():
                self.manifest.append_row(json.loads(line))
        else:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp.mkdir(parents=True)
            atomic_write_json(state, {"key": self.resume_key})
        self._journal = open(self._tmp / JOURNAL, "a", buffering=1)  # closed in __exit__
        self._resumed = len(self.manifest)
        return self

    def truncate(self, n: int) -> None:
        """Forget rows after the first ``n`` (a resumed generator restarts at a batch boundary)."""
        for c in (*COLUMNS, *OPTIONAL):
            del getattr(self.manifest, c)[n:]
        if self._journal is not None:
            assert self._tmp is not None  # __enter__ sets it before the journal
            self._journal.close()
            rows = (self._tmp / JOURNAL).read_text().splitlines()[:n]
            (self._tmp / JOURNAL).write_text("".join(r + "\n" for r in rows))
            self._journal = open(self._tmp / JOURNAL, "a", buffering=1)  # noqa: SIM115

    def add(
        self,
        image: np.ndarray,
        label: int,
        identity: str,
        source: str,
        params: dict,
        mix_label: int = -1,
        mix_weight: float = 1.0,
    ) -> str:
        """Write one image; ``mix_label``/``mix_weight``: its soft label under identity mixup."""
        assert self._tmp is not None, "use DatasetWriter as a context manager"
        rel = f"images/{label:06d}/{len(self.manifest):07d}.{self.fmt}"
        data = encode_image(image, self.fmt)
        dst = self._tmp / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)
        self.manifest.add(
            rel, label, identity, source, params, data, image.shape[1], image.shape[0], mix_label, mix_weight
        )
        if self._journal is not None:
            self._journal.write(json.dumps(self.manifest.row(len(self.manifest) - 1)) + "\n")
        return rel

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        resumed = getattr(self, "_resumed", 0)
        DatasetWriter.last = {"resumed": resumed, "written": len(self.manifest) - resumed}
        assert self._tmp is not None, "use DatasetWriter as a context manager"  # __enter__ always sets it
        if self._journal is None:
            if exc_type is None:
                write_manifest(self._tmp, self.manifest)
            return self._stack.__exit__(exc_type, exc, tb)
        self._journal.close()
        if isinstance(exc, OSError) and write_error_message(exc):  # full disk: say where the kept work is
            raise FaceFoundryError(
                f"{write_error_message(exc)}; the {len(self.manifest)} finished images are kept in "
                f"{self._tmp} (delete it to give up)"
            ) from None
        if exc_type is not None:
            note_saved("dataset", f"{len(self.manifest)} finished images in {self._tmp}")
            return False  # keep the partial folder: the next run resumes from it
        write_manifest(self._tmp, self.manifest)
        (self._tmp / JOURNAL).unlink()
        (self._tmp / RESUME).unlink()
        swap_into_place(self._tmp, self.out)
        return False
