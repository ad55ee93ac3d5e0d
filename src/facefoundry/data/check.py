"""Checking a dataset's files, whatever its layout (manifest, image folders, RecordIO).

One pass over every image: it is readable, matches the sha256 its manifest records, decodes
(``decode=True``) at the expected side, and is RGB. Greyscale, palette, RGBA or CMYK images are
either converted to RGB — counted per PIL mode, so the conversion is never silent — or rejected,
as ``non_rgb`` says. Every bad file is found; the error lists the first ``SHOW_BAD`` and the count.

``verify_for_training`` runs the cheap part of it (hashes and colour modes, no full decode) once
per dataset version: the result is cached under the DVC hash of the dataset, so a second training
on the same data does not read it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from facefoundry.data.images import decode_image
from facefoundry.data.sources import FaceSource
from facefoundry.errors import FaceFoundryError
from facefoundry.io import atomic_write_json, cache_dir, read_json
from facefoundry.progress import track

SHOW_BAD = 10
NonRGB = Literal["convert", "reject"]
_MODE_NAMES = {
    "L": "greyscale",
    "LA": "greyscale+alpha",
    "P": "palette",
    "PA": "palette+alpha",
    "RGBA": "RGBA",
    "CMYK": "CMYK",
    "I;16": "16-bit greyscale",
    "I": "32-bit greyscale",
    "1": "1-bit",
    "YCbCr": "YCbCr",
}


@dataclass
class FileCheck:
    images: int = 0
    problems: list[str] = field(default_factory=list)
    converted: Counter = field(default_factory=Counter)  # PIL mode → images converted to RGB
    sha256: list[str] = field(default_factory=list)
    decoded: list[np.ndarray | None] | None = None  # every image as decoded (``keep``), None where it failed

    def summary(self) -> str:
        return ", ".join(f"{n} {_MODE_NAMES.get(m, m)} ({m})" for m, n in sorted(self.converted.items()))

    def raise_if_bad(self, root: str | Path) -> None:
        if self.problems:
            shown = "; ".join(self.problems[:SHOW_BAD])
            more = f"; … and {len(self.problems) - SHOW_BAD} more" if len(self.problems) > SHOW_BAD else ""
            raise FaceFoundryError(f"{root}: {len(self.problems)} of {self.images} images are bad: {shown}{more}")

    def metrics(self) -> dict[str, int]:
        out = {"non_rgb_images": int(sum(self.converted.values()))}
        out.update({f"converted_from_{m.replace(';', '_')}": int(n) for m, n in sorted(self.converted.items())})
        return out


def check_files(
    source: FaceSource,
    image_size: int | None = None,
    non_rgb: NonRGB = "convert",
    verify_hash: bool = True,
    decode: bool = True,
    desc: str | None = None,
    keep: bool = False,
) -> FileCheck:
    """Check every image of ``source``; never raises for a bad image (see ``FileCheck.raise_if_bad``).

    ``keep`` (with ``decode``): hold every decoded image in ``FileCheck.decoded``, so the caller reads each
    image once (``sources.MemorySource``)."""
    res = FileCheck(images=len(source))
    if keep and decode:
        res.decoded = [None] * len(source)
    for i in track(range(len(source)), total=len(source), desc=desc or f"check {source.root.name}", unit="img"):
        try:
            data, name = source.raw(i)
        except FileNotFoundError:
            res.problems.append(f"{source.name(i)}: listed in the dataset but missing")
            res.sha256.append("")
            continue
        except (OSError, FaceFoundryError) as exc:
            res.problems.append(f"{source.name(i)}: unreadable ({getattr(exc, 'strerror', None) or exc})")
            res.sha256.append("")
            continue
        digest = hashlib.sha256(data).hexdigest()
        res.sha256.append(digest)
        want = source.expected_sha256(i) if verify_hash else None
        if want is not None and digest != want:
            res.problems.append(f"{name}: sha256 differs from the manifest (file changed or corrupt)")
            continue
        try:
            with Image.open(io.BytesIO(data)) as im:
                mode = im.mode
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            res.problems.append(f"{name}: cannot decode image ({exc.__class__.__name__})")
            continue
        if mode != "RGB":
            if non_rgb == "reject":
                res.problems.append(
                    f"{name}: {_MODE_NAMES.get(mode, mode)} ({mode}) image, not RGB (train.non_rgb=convert converts it)"
                )
                continue
            res.converted[mode] += 1
        if decode:
            try:
                image = decode_image(data, name, image_size)
            except FaceFoundryError as exc:
                res.problems.append(str(exc))
                continue
            if res.decoded is not None:
                res.decoded[i] = image
    return res


def verify_for_training(
    source: FaceSource, dataset_digest: str, non_rgb: NonRGB = "convert", log: Callable[[str], None] = print
) -> dict[str, int]:
    """Hashes and colour modes of every image, once per dataset version (cached); raises on bad files.

    Returns the conversion counts (``non_rgb_images``, ``converted_from_<mode>``)."""
    key = hashlib.sha256(json.dumps([dataset_digest, non_rgb, len(source)]).encode()).hexdigest()[:24]
    cache = cache_dir("verified") / f"{key}.json"
    cached = read_json(cache)
    if cached.get("ok"):
        res = {k: int(v) for k, v in cached.get("metrics", {}).items()}
    else:
        check = check_files(source, None, non_rgb, verify_hash=True, decode=False, desc=f"verify {source.root.name}")
        check.raise_if_bad(source.root)
        res = check.metrics()
        with contextlib.suppress(OSError):  # an unwritable cache only costs the next run another pass
            atomic_write_json(
                cache,
                {
                    "ok": True,
                    "dataset": str(source.root),
                    "dvc_md5": dataset_digest,
                    "non_rgb": non_rgb,
                    "metrics": res,
                },
            )
        what = "hashes match the manifest" if source.expected_sha256(0) is not None else "all images readable"
        log(f"{source.root}: {len(source)} images checked, {what}")
    if res.get("non_rgb_images"):
        check_modes = ", ".join(
            f"{n} from {k.removeprefix('converted_from_')}" for k, n in res.items() if k.startswith("converted_from_")
        )
        log(
            f"{source.root}: {res['non_rgb_images']} images are not RGB and are converted to RGB ({check_modes}); "
            "train.non_rgb=reject refuses them"
        )
    return res


def refuse_real_photos(source: FaceSource, setting: str) -> None:
    """No real photo ever enters FR training, under any regime: a dataset of aligned real photos
    (``facefoundry align``, for generators and realism translators only) is one clear line."""
    meta = getattr(getattr(source, "manifest", None), "meta", None) or {}
    if meta.get("generator") == "align":
        raise FaceFoundryError(
            f"{setting} {source.root}: aligned real photos (facefoundry align) train generators and realism "
            "translators, never an FR model; train on a generated dataset"
        )
