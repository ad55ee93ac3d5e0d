"""``validate`` stage: every image decodes, has the right size and hash; data metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facefoundry.config import Config
from facefoundry.data.check import NonRGB, check_files
from facefoundry.data.manifest import check_identity_counts
from facefoundry.data.sources import open_source
from facefoundry.io import atomic_write_json
from facefoundry.plots import score_histogram
from facefoundry.stages.common import log
from facefoundry.tracking import log_dataset_version, log_figure, log_metrics, run_name, stage_run


def validate_dataset(folder: str | Path, image_size: int, min_per_identity: int,
                     non_rgb: NonRGB = "convert") -> dict:
    """Check a dataset of any layout the trainer reads (manifest, image folders, RecordIO) end to end:
    identity counts, then every image (readable, manifest hash, decodes at ``image_size``, RGB or
    converted as ``non_rgb`` says). Returns its data metrics; raises listing the bad images."""
    folder = Path(folder)
    src = open_source(folder)
    where = str(folder / "manifest.parquet") if src.kind == "manifest" else str(folder)
    check_identity_counts(src.labels, src.identities, min_per_identity, where)
    check = check_files(src, image_size, non_rgb, desc=f"validate {folder.name}")
    check.raise_if_bad(folder)
    hashes = [h for h in check.sha256 if h]
    counts = np.bincount(np.asarray(src.labels), minlength=src.num_classes)
    if check.converted:
        log(f"{folder}: {check.summary()} image(s) are converted to RGB when read (train.non_rgb=reject refuses them)")
    return {"images": len(src), "identities": int(src.num_classes), "images_per_identity_min": int(counts.min()),
            "images_per_identity_mean": float(counts.mean()), "images_per_identity_max": int(counts.max()),
            "duplicate_images": int(len(hashes) - len(set(hashes))), **check.metrics()}


def judge_dataset(folder: str | Path, judges: list[str], max_images: int, batch_size: int,
                  seed: int = 0) -> dict[str, dict]:
    """Each judge encoder's intra/inter-identity cosine similarities on an identity-balanced sample.

    Returns ``{judge: {"metrics": {...}, "intra": array, "inter": array}}``; pure (no tracking).
    """
    from facefoundry.identity import load_encoder
    from facefoundry.identity.judge import consistency_metrics, identity_similarities, sample_balanced

    src = open_source(Path(folder))
    rng = np.random.default_rng(seed)
    idx = sample_balanced(src.labels, max_images, rng)
    images = np.stack([src.load(int(i)) for i in idx])
    out: dict[str, dict] = {}
    for spec in judges:
        enc = load_encoder(spec)
        name = enc.name if enc.name not in out else spec
        emb = enc.embed(images, batch_size, desc=f"judge {name} on {Path(folder).name}")
        intra, inter = identity_similarities(emb, src.labels[idx], rng=rng)
        out[name] = {"metrics": consistency_metrics(intra, inter), "intra": intra, "inter": inter}
    return out


def run_validate(cfg: Config, dataset: str | None = None, out: str | None = None) -> dict:
    folder = dataset or cfg.train.dataset
    metrics = validate_dataset(folder, cfg.base.image_size, cfg.train.min_images_per_identity, cfg.train.non_rgb)
    with stage_run(cfg, "validate", ["identity"], {"facefoundry.dataset": str(folder)},
                   name=run_name("validate", Path(folder).name)):
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
