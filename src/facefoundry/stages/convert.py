"""``convert``: any dataset layout the trainer reads (image folders, insightface RecordIO) → a manifest.

The manifest format adds what the others lack: a sha256 per image (so ``train`` and ``validate``
can prove the files are the ones generated), identity names, provenance, and a DVC-friendly
folder. Every image is checked first (all bad files listed at once); greyscale, palette and RGBA
images are converted to RGB — counted, and recorded in the manifest's meta — or refused, as
``train.non_rgb`` says. The write is resumable: a killed conversion continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from facefoundry.config import Config
from facefoundry.data.check import check_files
from facefoundry.data.sources import open_source
from facefoundry.data.writer import DatasetWriter
from facefoundry.errors import FaceFoundryError
from facefoundry.progress import track
from facefoundry.stages.common import log


def run_convert(cfg: Config, src: str | Path, out: str | Path, image_format: str = "png") -> Path:
    source = open_source(src)
    out = Path(out)
    if out.resolve() == Path(src).resolve():
        raise FaceFoundryError(f"{out}: the converted dataset must go to another folder than its source")
    if image_format not in ("png", "jpg"):
        raise FaceFoundryError(f"--format {image_format!r}: expected png or jpg")
    check = check_files(source, None, cfg.train.non_rgb, desc=f"check {source.root.name}")
    check.raise_if_bad(source.root)
    if check.converted:
        log(f"{source.root}: converting {check.summary()} image(s) to RGB")
    meta = {
        "generator": "convert",
        "source": str(source.root),
        "source_kind": source.kind,
        "num_classes": source.num_classes,
        "converted_to_rgb": dict(check.converted),
    }
    key = hashlib.sha256(json.dumps([meta, image_format, check.sha256], sort_keys=True).encode()).hexdigest()
    with DatasetWriter(out, meta, image_format, resume_key=key) as w:
        if w.done:
            log(f"{out}: resuming after {w.done} converted images")
        for i in track(
            range(w.done, len(source)),
            total=len(source),
            initial=w.done,
            desc=f"convert {source.root.name}",
            unit="img",
        ):
            label = int(source.labels[i])
            w.add(source.load(i), label, source.identities[label], source.kind, {"from": source.name(i)})
    log(f"{out}: {len(source)} images of {source.num_classes} identities ({source.kind} → manifest)")
    return out
