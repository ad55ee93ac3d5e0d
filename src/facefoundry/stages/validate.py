"""``validate`` stage: every image decodes, has the right size and hash; data metrics."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facefoundry.config import Config
from facefoundry.data.images import decode_image
from facefoundry.data.manifest import check_identity_counts
from facefoundry.data.sources import ManifestSource
from facefoundry.errors import FaceFoundryError
from facefoundry.io import atomic_write_json
from facefoundry.plots import score_histogram
from facefoundry.stages.common import log
from facefoundry.tracking import log_dataset_version, log_figure, log_metrics, run_name, stage_run


SHOW_BAD = 10


def validate_dataset(folder: str | Path, image_size: int, min_per_identity: int) -> dict:
    """Check a manifest dataset end to end and return its data metrics."""
    folder = Path(folder)
    src = ManifestSource(folder)
    m = src.manifest
    check_identity_counts(src.labels, src.identities, min_per_identity, str(folder / "manifest.parquet"))
    dupes = len(m.sha256) - len(set(m.sha256))
    problems: list[str] = []  # every bad image is found; the error lists the first SHOW_BAD and the count
    for i, rel in enumerate(tqdm(m.path, desc=f"validate {folder.name}", unit="img", leave=False,
                                 disable=len(m.path) < 2000)):
        p = folder / rel
        try:
            data = p.read_bytes()
        except OSError:
            problems.append(f"{rel}: listed in the manifest but missing")
            continue
        if hashlib.sha256(data).hexdigest() != m.sha256[i]:
            problems.append(f"{rel}: sha256 differs from the manifest (file changed or corrupt)")
            continue
        try:
            decode_image(data, rel, image_size)
        except FaceFoundryError as exc:
            problems.append(str(exc))
    if problems:
        shown = "; ".join(problems[:SHOW_BAD])
        more = f"; … and {len(problems) - SHOW_BAD} more" if len(problems) > SHOW_BAD else ""
        raise FaceFoundryError(f"{folder}: {len(problems)} of {len(m)} images are bad: {shown}{more}")
    counts = np.bincount(np.asarray(m.label), minlength=m.num_classes)
    return {"images": len(m), "identities": int(m.num_classes), "images_per_identity_min": int(counts.min()),
            "images_per_identity_mean": float(counts.mean()), "images_per_identity_max": int(counts.max()),
            "duplicate_images": int(dupes)}


def judge_dataset(folder: str | Path, judges: list[str], max_images: int, batch_size: int,
                  seed: int = 0) -> dict[str, dict]:
    """Each judge encoder's intra/inter-identity cosine similarities on an identity-balanced sample.

    Returns ``{judge: {"metrics": {...}, "intra": array, "inter": array}}``; pure (no tracking).
    """
    from facefoundry.identity import load_encoder
    from facefoundry.identity.judge import consistency_metrics, identity_similarities, sample_balanced

    src = ManifestSource(Path(folder))
    rng = np.random.default_rng(seed)
    idx = sample_balanced(src.labels, max_images, rng)
    images = np.stack([src.load(int(i)) for i in idx])
    out: dict[str, dict] = {}
    for spec in judges:
        enc = load_encoder(spec)
        name = enc.name if enc.name not in out else spec
        emb = enc.embed(images, batch_size)
        intra, inter = identity_similarities(emb, src.labels[idx], rng=rng)
        out[name] = {"metrics": consistency_metrics(intra, inter), "intra": intra, "inter": inter}
    return out


def run_validate(cfg: Config, dataset: str | None = None, out: str | None = None) -> dict:
    folder = dataset or cfg.train.dataset
    with stage_run(cfg, "validate", ["identity"], {"facefoundry.dataset": str(folder)},
                   name=run_name("validate", Path(folder).name)):
        metrics = validate_dataset(folder, cfg.base.image_size, cfg.train.min_images_per_identity)
        ident = cfg.identity
        for name, res in judge_dataset(folder, ident.judges, ident.judge_max_images, ident.batch_size,
                                       cfg.base.seed).items():
            metrics.update({f"judge_{name}_{k}": v for k, v in res["metrics"].items()})
            log_figure(score_histogram(f"{Path(folder).name}: judge {name}", res["intra"], res["inter"],
                                       xlabel="cosine similarity of identity vectors (higher = more alike)"),
                       f"plots/identity_similarity_{name}.png")
            log(f"judge {name}: intra-identity cosine {res['metrics']['intra_mean']:.3f}, "
                f"inter-identity {res['metrics']['inter_mean']:.3f}")
        log_metrics({f"data/{k}": v for k, v in metrics.items()})
        log_dataset_version(folder, context="validation")
        atomic_write_json(out or "outputs/validate/metrics.json", metrics)
        log(f"{folder}: valid ({metrics['images']} images, {metrics['identities']} identities)")
        return metrics
