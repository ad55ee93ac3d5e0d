"""dlib identity encoder: what FaceFoundry's template-crop geometry costs against dlib's own face chip.

    python benchmarks/encoder_geometry.py [--limit 300] [--data DIR]

On the same real photos (the first ``--limit`` of ``DIR``'s subfolders in sorted file order, split
evenly between them), two ways to a 128-d dlib descriptor:

- **dlib-bin**: HOG detector (upsample 1) → 5-point shape predictor → ``get_face_chip(size=150,
  padding=0.25)`` → ``compute_face_descriptor`` on that chip.
- **FaceFoundry**: ``FaceAligner`` (same detector, 68-point landmarks → insightface 5-point
  template) at 112 px and at 56 px → the ``dlib`` encoder, which warps the template crop onto
  dlib's chip inside torch (``DlibEncoder.to_chip``) before the torch port of the same network.

Both are compared on the raw (unnormalised) descriptors, ``DlibEncoder.descriptor``, so the
Euclidean distance is on dlib's own scale (same person below 0.6); the cosine is also given. The
port on dlib-bin's own 150-px chip is the numerical floor: anything above it is geometry. The
photos are read from disk only; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

if TYPE_CHECKING:
    from facefoundry.identity.encoders import DlibEncoder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for benchmarks._common; imported in main() so the module has no late imports
DATA = ROOT.parent / "shared" / "data" / "real_faces_unlabelled"
SAME_PERSON = 0.6  # dlib's published same-person threshold, Euclidean on raw descriptors
BATCH = 64


def photos(root: Path, limit: int) -> list[Path]:
    """The first ``limit`` photos of ``root``'s subfolders, sorted, split evenly (the remainder to the first)."""
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise SystemExit(f"{root}: no subfolders of photos")
    out = []
    for i, folder in enumerate(folders):
        n = limit // len(folders) + (i < limit % len(folders))
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        out += files[:n]
    return out


def dlib_bin(images: list[np.ndarray]) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
    """dlib-bin end to end: per photo its 150-px chip and raw descriptor, or None where no face is found."""
    import dlib
    import face_recognition_models as frm

    detector = dlib.get_frontal_face_detector()
    sp5 = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    chips: list[np.ndarray | None] = []
    for im in images:
        boxes, scores, _ = detector.run(im, 1, 0.0)
        if not boxes:
            chips.append(None)
            continue
        best = max(range(len(boxes)), key=lambda i: (scores[i], boxes[i].area()))  # as FaceAligner picks
        chips.append(dlib.get_face_chip(im, sp5(im, boxes[best]), size=150, padding=0.25))
    found = [c for c in chips if c is not None]
    desc = iter(np.array(rec.compute_face_descriptor(found), dtype=np.float64) if found else [])
    return chips, [None if c is None else next(desc) for c in chips]


def port_raw(enc: DlibEncoder, images: np.ndarray, *, chip: bool) -> np.ndarray:
    """Raw descriptors from the port: of template crops through ``to_chip``, or of dlib chips as they are."""
    from facefoundry.identity.base import to_unit_float

    out = []
    with torch.inference_mode():
        for s in range(0, len(images), BATCH):
            x = to_unit_float(images[s : s + BATCH])
            out.append(enc.descriptor(x * 255.0 if chip else enc.to_chip(x)).double())
    return torch.cat(out).numpy()


def compare(ref: np.ndarray, other: np.ndarray) -> dict:
    """Euclidean distance and cosine between matching rows of two raw-descriptor arrays."""
    d = np.linalg.norm(ref - other, axis=1)
    cos = (ref * other).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(other, axis=1))
    return {
        "euclid_median": float(np.median(d)),
        "euclid_p95": float(np.percentile(d, 95)),
        "euclid_max": float(d.max()),
        "over_same_person_threshold": int((d > SAME_PERSON).sum()),
        "cos_median": float(np.median(cos)),
        "cos_p5": float(np.percentile(cos, 5)),
        "cos_min": float(cos.min()),
    }


def main() -> None:
    from benchmarks._common import save
    from facefoundry.identity import load_encoder
    from facefoundry.identity.detect import FaceAligner

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=300, help="photos, split evenly between the subfolders")
    ap.add_argument("--data", type=Path, default=DATA, help="folder of subfolders of real photos")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    paths = photos(args.data, args.limit)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    t0 = time.perf_counter()
    chips, ref = dlib_bin(images)
    t_dlib = time.perf_counter() - t0

    t0 = time.perf_counter()
    aligners = {size: FaceAligner(size=size) for size in (112, 56)}
    dets = [aligners[112].detect(im) for im in images]  # upsample 1, retried at 2 where nothing is found
    both = [i for i in range(len(images)) if dets[i] is not None and ref[i] is not None]
    enc = load_encoder("dlib")
    ref_both = np.stack([ref[i] for i in both])
    rows = {
        "port on dlib-bin's own chip (numerical floor)": port_raw(enc, np.stack([chips[i] for i in both]), chip=True)
    }
    for size, aligner in aligners.items():
        crops = np.stack([a.crop for a in aligner.warp([images[i] for i in both], [dets[i] for i in both])])
        raw = port_raw(enc, crops, chip=False)
        unit = enc.embed(crops, batch_size=BATCH)  # the platform's own call: must be the normalised raw vector
        assert np.abs(unit - raw / np.linalg.norm(raw, axis=1, keepdims=True)).max() < 1e-5
        rows[f"FaceFoundry: {size}-px template crop → port"] = raw
    t_ff = time.perf_counter() - t0

    between = np.linalg.norm(ref_both[:, None] - ref_both[None], axis=-1)[np.triu_indices(len(both), 1)]
    source = np.array([paths[i].parent.name for i in both])
    result = {
        "photos": len(paths),
        "data": str(args.data),
        "torch_threads": torch.get_num_threads(),
        "both_found": len(both),
        "dlib_bin_missed": sum(r is None for r in ref),
        "facefoundry_missed": sum(d is None for d in dets),
        "missed_by_either": len(paths) - len(both),
        "photos_by_folder": {f: int((source == f).sum()) for f in sorted(set(source))},
        "dlib_descriptor_norm_median": float(np.median(np.linalg.norm(ref_both, axis=1))),
        # scale: dlib-bin's distance between two different photos of the set (nearly all different people)
        "dlib_bin_between_photos": {"median": float(np.median(between)), "p1": float(np.percentile(between, 1))},
        "seconds": {"dlib_bin": round(t_dlib, 1), "facefoundry": round(t_ff, 1)},
        "rows": {
            name: {
                "all": compare(ref_both, raw),
                **{f: compare(ref_both[source == f], raw[source == f]) for f in sorted(set(source))},
            }
            for name, raw in rows.items()
        },
    }
    save("encoder_geometry", result)

    print(
        f"\n{len(both)} of {len(paths)} photos, a face found by both ({result['dlib_bin_missed']} missed by "
        f"dlib-bin, {result['facefoundry_missed']} by FaceAligner); dlib same-person threshold {SAME_PERSON}; "
        f"dlib-bin between different photos: median {np.median(between):.3g}\n"
    )
    print("| against dlib-bin's descriptor | Euclidean median | p95 | max | > 0.6 | cosine median | p5 | min |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in result["rows"].items():
        a = r["all"]
        print(
            f"| {name} | {a['euclid_median']:.3g} | {a['euclid_p95']:.3g} | {a['euclid_max']:.3g} "
            f"| {a['over_same_person_threshold']} | {a['cos_median']:.4f} | {a['cos_p5']:.4f} | {a['cos_min']:.4f} |"
        )


if __name__ == "__main__":
    main()
