"""``align`` stage: a folder of real photos in, a manifest dataset of template-aligned crops out.

Real photos have to go through the same 5-point alignment as rendered faces before realism
translators, generators or judges can use them (:mod:`facefoundry.identity.detect`). The
output is an ordinary FaceFoundry dataset, so ``validate``, ``realism`` and ``vec2face`` read
it unchanged. Photos where no face is found are never dropped silently: they are listed with
the reason in ``DST/misses.json``. The run is resumable: an interrupted ``align`` with the same
settings and photos continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facefoundry.config import Config
from facefoundry.data.images import read_image
from facefoundry.data.sources import IMAGE_EXTS, open_source
from facefoundry.data.writer import DatasetWriter
from facefoundry.errors import FaceFoundryError
from facefoundry.io import atomic_write_json
from facefoundry.plots import image_grid
from facefoundry.progress import track
from facefoundry.stages.common import log

if TYPE_CHECKING:  # dlib and torch load only when a run starts
    from facefoundry.identity.detect import Detection, FaceAligner

MISSES = "misses.json"
CHUNK = 32  # photos decoded and detected before one batched warp + write
MAX_IDENTITY_PHOTOS = 1000  # auto layout: subfolders this big (median) are collections, not identities


@dataclass(frozen=True)
class PhotoSet:
    """The photos of SRC in processing order and the identity each belongs to."""

    root: Path
    files: list[Path]  # relative to root, sorted
    identities: list[str]  # one per file
    labelled: bool


def _rel(p: Path) -> str:
    return p.as_posix()


def find_photos(src: str | Path, labels: str = "auto", exclude: Path | None = None) -> PhotoSet:
    """Every image file under ``src`` (recursive, sorted, hidden entries skipped) and its identity.

    ``labels``: ``folders`` = the first path component is the identity (a labelled image folder);
    ``none`` = every photo is its own identity (its path without extension); ``auto`` = ``folders``
    when all photos sit exactly one level down in two or more subfolders of at most
    :data:`MAX_IDENTITY_PHOTOS` photos (median) — bigger subfolders are collections (``ffhq256/``).
    """
    root = Path(src)
    if not root.exists():
        raise FaceFoundryError(f"{root}: photo folder does not exist")
    if not root.is_dir():
        raise FaceFoundryError(f"{root}: not a folder (align takes a folder of photos)")
    ex = exclude.resolve() if exclude is not None else None
    files = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or p.suffix.lower() not in IMAGE_EXTS or not p.is_file():
            continue
        if ex is not None and (p.resolve() == ex or ex in p.resolve().parents):
            continue
        files.append(rel)
    files.sort(key=_rel)
    if not files:
        raise FaceFoundryError(
            f"{root}: no image files ({', '.join(sorted(IMAGE_EXTS))}) found in the folder or its subfolders"
        )
    if labels == "auto":
        by_folder: dict[str, int] = {}
        for f in files:
            key = f.parts[0] if len(f.parts) == 2 else ""  # "": a photo at the top or deeper than one level
            by_folder[key] = by_folder.get(key, 0) + 1
        labelled = (
            "" not in by_folder
            and len(by_folder) >= 2
            and float(np.median(list(by_folder.values()))) <= MAX_IDENTITY_PHOTOS
        )
    elif labels == "folders":
        labelled = True
        loose = [f for f in files if len(f.parts) < 2]
        if loose:
            raise FaceFoundryError(
                f"{root / loose[0]}: photo outside an identity subfolder (align.labels=folders "
                f"puts each identity in its own subfolder; {len(loose)} such photos)"
            )
    else:
        labelled = False
    identities = [f.parts[0] if labelled else _rel(f.with_suffix("")) for f in files]
    return PhotoSet(root, files, identities, labelled)


def _resume_key(cfg: Config, photos: PhotoSet) -> str:
    h = hashlib.sha256()
    a = cfg.align
    settings = {
        "size": cfg.base.image_size,
        **({"detector": a.detector} if a.detector != "dlib" else {}),  # dlib: the key crops made before had
        **({"yunet": [a.yunet_long_side, a.yunet_score, a.yunet_nms]} if a.detector == "yunet" else {}),
        "upsample": a.upsample,
        "retry_upsample": a.retry_upsample,
        "min_score": a.min_score,
        "image_format": a.image_format,
        "labelled": photos.labelled,
        "template": "arcface",
        "root": str(photos.root.resolve()),
    }
    h.update(json.dumps(settings, sort_keys=True).encode())
    for f in photos.files:
        h.update(f"{_rel(f)}\0{(photos.root / f).stat().st_size}\n".encode())
    return h.hexdigest()


def _miss_reason(aligner: FaceAligner, photos: PhotoSet, i: int) -> tuple[np.ndarray | None, Detection | str]:
    """(image, detection) of photo ``i``, or (None, reason) when it yields no face."""
    try:
        img = read_image(photos.root / photos.files[i])
    except FaceFoundryError as exc:
        return None, str(exc).removeprefix(f"{photos.root / photos.files[i]}: ")
    det = aligner.detect(img)
    if det is None:
        return None, f"no face found ({aligner.searched})"
    return img, det


def _misses_summary(photos: PhotoSet, misses: list[dict]) -> dict:
    by_folder: dict[str, int] = {}
    for m in misses:
        top = m["path"].split("/")[0] if "/" in m["path"] else "."
        by_folder[top] = by_folder.get(top, 0) + 1
    return {"photos": len(photos.files), "misses": len(misses), "by_folder": by_folder, "items": misses}


def _sample_grid(out: Path, n: int = 64, cols: int = 8) -> np.ndarray:
    src = open_source(out)
    picks = np.unique(np.linspace(0, len(src) - 1, min(n, len(src))).round().astype(int))
    crops = [src.load(int(i)) for i in picks]
    return image_grid([crops[k : k + cols] for k in range(0, len(crops), cols)])


def run_align(cfg: Config, src: str | Path, out: str | Path, limit: int | None = None) -> dict:
    """Detect, align and write every photo of ``src`` to the dataset ``out``; returns the misses summary."""
    from facefoundry.identity.detect import FaceAligner
    from facefoundry.tracking import log_dataset_version, log_image, log_metrics, run_name, stage_run

    out = Path(out)
    if limit is not None and limit < 0:
        raise FaceFoundryError(f"--limit must be >= 0, got {limit}")
    if Path(src).resolve() == out.resolve():
        raise FaceFoundryError(f"{out}: output folder is the photo folder itself; choose another --out")
    photos = find_photos(src, cfg.align.labels, exclude=out)
    if limit:
        photos = PhotoSet(photos.root, photos.files[:limit], photos.identities[:limit], photos.labelled)
    n = len(photos.files)
    size, a = cfg.base.image_size, cfg.align
    log(
        f"{photos.root}: {n} photos, "
        + (
            f"{len(set(photos.identities))} identity subfolders"
            if photos.labelled
            else "unlabelled (each photo its own identity)"
        )
        + f"; aligning to {size}x{size}"
    )
    yunet = {"long_side": a.yunet_long_side, "score_threshold": a.yunet_score, "nms_threshold": a.yunet_nms}
    aligner = FaceAligner(size, a.upsample, a.retry_upsample, a.min_score, detector=a.detector, yunet=yunet)
    meta = {
        "generator": "align",
        "image_size": size,
        "template": "arcface",
        **({"detector": a.detector} if a.detector != "dlib" else {}),  # dlib's datasets keep their version
        **(
            {"yunet": {"long_side": a.yunet_long_side, "score": a.yunet_score, "nms": a.yunet_nms}}
            if a.detector == "yunet"
            else {}
        ),
        "photos": n,
        "labelled": photos.labelled,
        "source_dir": str(photos.root),
    }
    index = {_rel(f): i for i, f in enumerate(photos.files)}
    misses: list[dict] = []
    partial = out.parent / f".{out.name}.partial"  # DatasetWriter's resume folder

    with stage_run(
        cfg,
        "align",
        ["align"],
        {"facefoundry.align.source": str(photos.root)},
        name=run_name("align", photos.root.name),
    ):
        t0 = time.perf_counter()
        try:
            with DatasetWriter(out, meta, a.image_format, resume_key=_resume_key(cfg, photos)) as w:
                m = w.manifest
                label_of = dict(zip(m.identity, m.label))
                start = index[json.loads(m.params[-1])["source_path"]] + 1 if len(m) else 0
                if start:
                    log(f"resuming: {len(m)} crops of the first {start} photos already written")
                    aligned = {json.loads(p)["source_path"] for p in m.params}
                    for i in range(start):  # the earlier misses are not journalled: find their reasons again
                        if _rel(photos.files[i]) not in aligned:
                            img, why = _miss_reason(aligner, photos, i)
                            misses.append(
                                {
                                    "path": _rel(photos.files[i]),
                                    "reason": why if img is None else "not aligned in the interrupted run",
                                }
                            )
                bar = track(total=n, initial=start, desc="align", unit="photo", leave=True)
                for c0 in range(start, n, CHUNK):
                    found: list[tuple[int, np.ndarray, Detection]] = []
                    for i in range(c0, min(c0 + CHUNK, n)):
                        img, det = _miss_reason(aligner, photos, i)
                        if img is None:
                            misses.append({"path": _rel(photos.files[i]), "reason": det})
                        else:
                            assert not isinstance(det, str)  # _miss_reason: an image comes with its detection
                            found.append((i, img, det))
                        bar.update(1)
                    faces = aligner.warp([f[1] for f in found], [f[2] for f in found])
                    for (i, _, _), face in zip(found, faces):
                        ident = photos.identities[i]
                        label = label_of.setdefault(ident, len(label_of))
                        w.add(
                            face.crop,
                            label,
                            ident,
                            "align",
                            {
                                "source_path": _rel(photos.files[i]),
                                "score": round(face.score, 4),
                                "box": list(face.box),
                                "landmarks5": np.round(face.landmarks5, 2).tolist(),
                                "upsample": face.upsample,
                            },
                        )
                    bar.set_postfix(misses=len(misses))
                bar.close()
                if w.done == 0:
                    first = misses[0]
                    hint = (
                        "try align.detector=dlib"
                        if a.detector == "yunet"
                        else f"try align.upsample={a.upsample + 1} or a lower align.min_score"
                    )
                    raise FaceFoundryError(
                        f"{photos.root}: no face found in any of the {n} images (e.g. {first['path']}: "
                        f"{first['reason']}); {hint}"
                    )
                misses.sort(key=lambda x: index[x["path"]])
                m.meta.update(misses=len(misses), num_classes=len(label_of), aligned=w.done)
        except FaceFoundryError:
            shutil.rmtree(partial, ignore_errors=True)  # nothing worth resuming
            raise
        secs = time.perf_counter() - t0
        summary = _misses_summary(photos, misses)
        atomic_write_json(out / MISSES, summary)
        done = n - start
        rate = done / secs if secs > 0 else float("nan")
        log_metrics(
            {
                "photos": n,
                "aligned": n - len(misses),
                "misses": len(misses),
                "miss_rate": len(misses) / n,
                "identities": len(label_of),
                "seconds": secs,
                "images_per_second": rate,
            }
        )
        log_image(_sample_grid(out), "samples/grid.png")
        log_dataset_version(out)
    where = ", ".join(f"{k}: {v}" for k, v in summary["by_folder"].items())
    log(
        f"wrote {n - len(misses)} aligned crops of {len(label_of)} identities to {out} "
        f"({rate:.1f} photos/s); {len(misses)} of {n} photos had no face"
        + (f" ({where}), listed in {out / MISSES}" if misses else "")
    )
    return summary
