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
                     non_rgb: NonRGB = "convert", with_hashes: bool = False) -> dict | tuple[dict, list[str]]:
    """Check a dataset of any layout the trainer reads (manifest, image folders, RecordIO) end to end:
    identity counts, then every image (readable, manifest hash, decodes at ``image_size``, RGB or
    converted as ``non_rgb`` says). Returns its data metrics (and every image's sha256 ``with_hashes``);
    raises listing the bad images."""
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
    metrics = {"images": len(src), "identities": int(src.num_classes), "images_per_identity_min": int(counts.min()),
               "images_per_identity_mean": float(counts.mean()), "images_per_identity_max": int(counts.max()),
               "duplicate_images": int(len(hashes) - len(set(hashes))), **check.metrics()}
    return (metrics, check.sha256) if with_hashes else metrics


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


def _gate_frame(folder: Path, sha256: list[str], image_size: int):  # noqa: ANN202
    """The manifest table the gates check; other layouts as one (their sizes were checked while decoding)."""
    from facefoundry.data.manifest import Manifest
    from facefoundry.quality.gates import manifest_frame

    src = open_source(folder)
    if src.kind == "manifest":
        return manifest_frame(src.manifest)  # read once, by the source
    m = Manifest(path=[src.name(i) for i in range(len(src))], label=[int(x) for x in src.labels],
                 identity=[src.identities[int(x)] for x in src.labels], source=[src.kind] * len(src),
                 params=["{}"] * len(src), width=[image_size] * len(src), height=[image_size] * len(src),
                 sha256=list(sha256))
    return manifest_frame(m)


def _log_quality(folder: Path, report, ident_judges: dict[str, dict]) -> None:  # noqa: ANN001
    from facefoundry.plots import centre_map, count_histogram

    name = folder.name
    for judge, res in ident_judges.items():
        log_figure(score_histogram(f"{name}: judge {judge}", res["intra"], res["inter"],
                                   xlabel="cosine similarity of identity vectors (higher = more alike)"),
                   f"plots/identity_similarity_{judge}.png")
    if report.intra.size and report.inter.size:
        log_figure(score_histogram(f"{name}: intra- vs inter-class, judge centred", report.intra, report.inter,
                                   xlabel="cosine similarity, centred judge space (higher = more alike)"),
                   "plots/intra_inter_centred.png")
    log_figure(count_histogram(f"{name}: images per identity", report.counts), "plots/images_per_identity.png")
    leaked = {d["label"] for d in report.problems.get("leaked", [])}
    marked = [i for i, c in enumerate(report.centre_labels) if int(c) in leaked]
    log_figure(centre_map(f"{name}: identity centres (judge, PCA)", report.centres, report.centre_sources,
                          marked=marked, marked_label="leaked"), "plots/identity_centres.png")


def run_validate(cfg: Config, dataset: str | None = None, out: str | None = None) -> dict:
    """File checks, data metrics (``facefoundry.quality``) and the Great Expectations gates of one dataset.

    A failing gate stops with one line naming every failed expectation (exit 2), after the full GX result,
    its Data Docs and the problem lists (leaked, mislabelled, duplicated images) are logged to MLflow and
    written under ``outputs/quality/<dataset>/``."""
    from facefoundry.errors import FaceFoundryError
    from facefoundry.quality.gates import run_gates
    from facefoundry.quality.measure import measure_dataset
    from facefoundry.tracking import dvc_dir_hash, log_artifact, set_tag

    folder = Path(dataset or cfg.train.dataset)
    metrics, sha256 = validate_dataset(folder, cfg.base.image_size, cfg.train.min_images_per_identity,
                                       cfg.train.non_rgb, with_hashes=True)
    digest = dvc_dir_hash(folder)
    with stage_run(cfg, "validate", ["identity", "quality"], {"facefoundry.dataset": str(folder)},
                   name=run_name("validate", folder.name)):
        ident = cfg.identity
        judged = judge_dataset(folder, ident.judges, ident.judge_max_images, ident.batch_size, cfg.base.seed)
        for name, res in judged.items():
            metrics.update({f"judge_{name}_{k}": v for k, v in res["metrics"].items()})
            log(f"judge {name}: intra-identity cosine {res['metrics']['intra_mean']:.3f}, "
                f"inter-identity {res['metrics']['inter_mean']:.3f}")
        report = measure_dataset(folder, cfg.quality, ident.batch_size, cfg.base.seed, digest, sha256, log=log)
        metrics.update(report.metrics)
        _log_quality(folder, report, judged)
        qdir = Path("outputs/quality") / folder.name
        atomic_write_json(qdir / "problems.json", report.problems)
        gate = run_gates(_gate_frame(folder, sha256, cfg.base.image_size), metrics, cfg.quality.gates,
                         cfg.base.image_size, qdir)
        log_artifact(qdir / "problems.json", "quality")
        if cfg.quality.gates.enabled:
            log_artifact(gate.result_json, "quality")
            if gate.docs_dir is not None:
                log_artifact(gate.docs_dir, "quality/data_docs")
        set_tag("facefoundry.quality_gates", "passed" if gate.success else "failed")
        metrics["gates_failed"] = len(gate.failures)
        log_metrics({f"data/{k}": v for k, v in metrics.items()})
        log_dataset_version(folder, context="validation", digest=digest)
        log(f"{folder}: identities separable {metrics['separability']:.2f}, intra {metrics['intra_mean']:.3f} / "
            f"inter {metrics['inter_mean']:.3f} (judge {cfg.quality.judge}, centred), "
            f"{metrics['leaked_identities']} leaked, {metrics['near_duplicate_images']} near duplicates")
        if not gate.success:
            raise FaceFoundryError(f"{folder}: {gate.summary()} (details: {qdir}/)")
        log(gate.summary())
        atomic_write_json(out or "outputs/validate/metrics.json", metrics)
        log(f"{folder}: valid ({metrics['images']} images, {metrics['identities']} identities)")
        return metrics
