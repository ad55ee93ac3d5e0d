"""The one write loop of every generator: resumable batches in, a manifest dataset out.

A generator supplies what only it knows — the dataset's metadata, every image's label, and a
function that makes the batches from a given offset (images plus each image's parameters) — and
:func:`write_generated` does the rest the same way for all: the resume key (the metadata, the
``generate`` settings and the generator's format version), restarting at a batch boundary so a
killed run resumes to exactly the dataset of an uninterrupted one, identity names, SynFace soft
labels under identity mixup, a progress bar with an ETA, and the throughput of this invocation.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefoundry.config import GenerateCfg
from facefoundry.data.writer import DatasetWriter
from facefoundry.progress import track
from facefoundry.sampling.mixup import IdentityMix

Batches = Callable[[int], Iterable[tuple[np.ndarray, list[dict]]]]
"""``batches(start)`` yields ``(uint8 images [B, S, S, 3], one params dict per image)`` for the images
``start, start + batch_size, …`` in order, each batch seeded by its offset."""


@dataclass(frozen=True)
class Written:
    out: Path
    images: int  # written by this invocation (a resumed run counts only its own)
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)


def resume_key(meta: dict, g: GenerateCfg, format_version: int) -> str:
    """What must match for a partial dataset to be continued rather than started over."""
    return hashlib.sha256(
        json.dumps([meta, g.model_dump(mode="json"), format_version], sort_keys=True, default=str).encode()
    ).hexdigest()


def write_generated(
    g: GenerateCfg,
    meta: dict,
    labels: Sequence[int] | np.ndarray,
    batches: Batches,
    *,
    name: str,
    format_version: int,
    mix: IdentityMix | None = None,
    identity_digits: int = 6,
    log: Callable[[str], None] = print,
) -> Written:
    """Write ``len(labels)`` images to ``g.out`` (atomically, resumable); image ``j`` is identity ``labels[j]``,
    named ``<name>_<label>`` and recorded as made by ``name``."""
    t0 = time.perf_counter()
    with DatasetWriter(g.out, meta, g.image_format, resume_key=resume_key(meta, g, format_version)) as w:
        start = w.done - w.done % g.batch_size  # restart at a batch boundary: same batch seeds, same pixels
        w.truncate(start)
        if start:
            log(f"{name}: resuming after {start} finished images")
        j = start
        with track(total=len(labels), initial=start, desc=name, unit="img") as bar:
            for images, params in batches(start):
                for image, p in zip(images, params, strict=True):
                    label = int(labels[j])
                    soft = () if mix is None else mix.soft_label(j, p)
                    w.add(image, label, f"{name}_{label:0{identity_digits}d}", name, p, *soft)
                    j += 1
                bar.update(len(images))
    return Written(Path(g.out), len(labels) - start, time.perf_counter() - t0)
