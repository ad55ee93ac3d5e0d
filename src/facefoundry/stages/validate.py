"""``validate`` stage: every image decodes, has the right size and hash; data metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from facefoundry.config import Config
from facefoundry.data.check import NonRGB, check_files
from facefoundry.data.manifest import check_identity_counts
from facefoundry.data.sources import FaceSource, MemorySource, open_source
from facefoundry.io import atomic_write_json
from facefoundry.plots import score_histogram
from facefoundry.quality.measure import EmbeddingMemo
from facefoundry.stages.common import dataset_grid, log, setting_grid
from facefoundry.tracking import log_dataset_version, log_figure, log_image, log_metrics, run_name, stage_run


@dataclass
class CheckedDataset:
    """A dataset whose every file was checked: its data metrics, each image's sha256, and a source that reads
    the images as decoded by the check (held in RAM when they fit) so nothing decodes them again."""

    metrics: dict
    sha256: list[str]
    source: FaceSource


def check_dataset(
    folder: str | Path, image_size: int, min_per_identity: int, non_rgb: NonRGB = "convert", keep_mb: float = 0
) -> CheckedDataset:
    """Check a dataset of any layout the trainer reads (manifest, image folders, RecordIO) end to end:
    identity counts, then every image (readable, manifest hash, decodes at ``image_size``, RGB or
    converted as ``non_rgb`` says); raises listing the bad images. Decoded images are kept in RAM when
    they take at most ``keep_mb`` MB."""
    folder = Path(folder)
    src = open_source(folder)
    where = str(folder / "manifest.parquet") if src.kind == "manifest" else str(folder)
    check_identity_counts(src.labels, src.identities, min_per_identity, where)
    keep = len(src) * image_size * image_size * 3 <= keep_mb * 2**20
    check = check_files(src, image_size, non_rgb, desc=f"validate {folder.name}", keep=keep)
    check.raise_if_bad(folder)
    hashes = [h for h in check.sha256 if h]
    counts = np.bincount(np.asarray(src.labels), minlength=src.num_classes)
    if check.converted:
        log(f"{folder}: {check.summary()} image(s) are converted to RGB when read (train.non_rgb=reject refuses them)")
    metrics = {
        "images": len(src),
        "identities": int(src.num_classes),
        "images_per_identity_min": int(counts.min()),
        "images_per_identity_mean": float(counts.mean()),
        "images_per_identity_max": int(counts.max()),
        "duplicate_images": int(len(hashes) - len(set(hashes))),
        **check.metrics(),
    }
    decoded = cast("list[np.ndarray] | None", check.decoded)  # raise_if_bad above: every image decoded
    source = MemorySource(src, decoded) if decoded is not None else src
    return CheckedDataset(metrics, check.sha256, source)


def validate_dataset(
    folder: str | Path, image_size: int, min_per_identity: int, non_rgb: NonRGB = "convert", with_hashes: bool = False
) -> dict | tuple[dict, list[str]]:
    """:func:`check_dataset`'s data metrics (and every image's sha256 ``with_hashes``)."""
    checked = check_dataset(folder, image_size, min_per_identity, non_rgb)
    return (checked.metrics, checked.sha256) if with_hashes else checked.metrics


def judge_dataset(
    folder: str | Path | FaceSource,
    judges: list[str],
    max_images: int,
    batch_size: int,
    seed: int = 0,
    memo: EmbeddingMemo | None = None,
) -> dict[str, dict]:
    """Each judge encoder's intra/inter-identity cosine similarities on an identity-balanced sample.

    Returns ``{judge: {"metrics": {...}, "intra": array, "inter": array}}``; pure (no tracking). ``memo``
    shares the embeddings with the quality metrics of the same source.
    """
    from facefoundry.identity import load_encoder
    from facefoundry.identity.judge import consistency_metrics, identity_similarities, sample_balanced

    src = folder if isinstance(folder, FaceSource) else open_source(Path(folder))
    memo = memo or EmbeddingMemo(src)
    rng = np.random.default_rng(seed)
    idx = sample_balanced(src.labels, max_images, rng)
    out: dict[str, dict] = {}
    for spec in judges:
        enc = load_encoder(spec)
        name = enc.name if enc.name not in out else spec
        emb = memo.embed(enc, idx, batch_size, desc=f"judge {name} on {src.root.name}")
        intra, inter = identity_similarities(emb, src.labels[idx], rng=rng)
        out[name] = {"metrics": consistency_metrics(intra, inter), "intra": intra, "inter": inter}
    return out


def _gate_frame(src: FaceSource, sha256: list[str], image_size: int):
    """The manifest table the gates check; other layouts as one (their sizes were checked while decoding)."""
    from facefoundry.data.manifest import Manifest
    from facefoundry.quality.gates import manifest_frame

    if src.kind == "manifest":
        # a ManifestSource, or a MemorySource over one: both have .manifest
        return manifest_frame(src.manifest)  # type: ignore[attr-defined]  # read once, by the source
    m = Manifest(
        path=[src.name(i) for i in range(len(src))],
        label=[int(x) for x in src.labels],
        identity=[src.identities[int(x)] for x in src.labels],
        source=[src.kind] * len(src),
        params=["{}"] * len(src),
        width=[image_size] * len(src),
        height=[image_size] * len(src),
        sha256=list(sha256),
    )
    return manifest_frame(m)


def _log_quality(folder: Path, report, ident_judges: dict[str, dict]) -> None:
    from facefoundry.plots import centre_map, count_histogram

    name = folder.name
    for judge, res in ident_judges.items():
        log_figure(
            score_histogram(
                f"{name}: judge {judge}",
                res["intra"],
                res["inter"],
                xlabel="cosine similarity of identity vectors (higher = more alike)",
            ),
            f"plots/identity_similarity_{judge}.png",
        )
    if report.intra.size and report.inter.size:
        log_figure(
            score_histogram(
                f"{name}: intra- vs inter-class, judge centred",
                report.intra,
                report.inter,
                xlabel="cosine similarity, centred judge space (higher = more alike)",
            ),
            "plots/intra_inter_centred.png",
        )
    log_figure(count_histogram(f"{name}: images per identity", report.counts), "plots/images_per_identity.png")
    leaked = {d["label"] for d in report.problems.get("leaked", [])}
    marked = [i for i, c in enumerate(report.centre_labels) if int(c) in leaked]
    log_figure(
        centre_map(
            f"{name}: identity centres (judge, PCA)",
            report.centres,
            report.centre_sources,
            marked=marked,
            marked_label="leaked",
        ),
        "plots/identity_centres.png",
    )


def run_validate(
    cfg: Config, dataset: str | None = None, out: str | None = None, products: str | Path | None = None
) -> dict:
    """File checks, data metrics (``facefoundry.quality``) and the Great Expectations gates of one dataset.

    ``products`` (default ``outputs/validate/<dataset>``) receives what a person reads: ``gates.json`` (every
    expectation, deterministic), ``problems.json`` (leaked, mislabelled, duplicated images) and the plots; the
    full GX result and its Data Docs go to the MLflow run. A failing gate stops with one line naming every
    failed expectation (exit 2), after all of that is written and logged. Each image is decoded once (kept in
    RAM up to ``train.preload_max_mb``) and embedded at most once per encoder."""
    import tempfile

    from facefoundry.data.hashing import dvc_dir_hash
    from facefoundry.errors import FaceFoundryError
    from facefoundry.quality.gates import run_gates
    from facefoundry.quality.judging import same_encoder
    from facefoundry.quality.measure import dataset_judge, measure_dataset
    from facefoundry.tracking import log_artifact, set_tag

    folder = Path(dataset or cfg.train.dataset)
    products = Path(products) if products is not None else Path("outputs/validate") / folder.name
    checked = check_dataset(
        folder,
        cfg.base.image_size,
        cfg.train.min_images_per_identity,
        cfg.train.non_rgb,
        keep_mb=cfg.train.preload_max_mb,
    )
    metrics, sha256, source = dict(checked.metrics), checked.sha256, checked.source
    digest = dvc_dir_hash(folder)
    memo = EmbeddingMemo(source)
    # judge ≠ teacher: the quality judge, resolved from the generator's teachers (its manifest metadata)
    judge = dataset_judge(cfg.quality, source, log)
    log(f"{folder}: {judge.describe()}")
    ident = cfg.identity
    # identity.judges' histograms, and the quality judge's beside them when it is not listed (judge_<name>_*)
    judges = [*ident.judges, *([] if any(same_encoder(j, judge.name) for j in ident.judges) else [judge.name])]
    with (
        stage_run(
            cfg,
            "validate",
            ["identity", "quality"],
            {
                "facefoundry.dataset": str(folder),
                "data.judge": judge.label,
                "data.judge_teachers": ",".join(judge.teachers),
                "data.judge_chosen": "auto" if judge.auto else "quality.judge",
            },
            name=run_name("validate", folder.name),
            products=products,
        ),
        tempfile.TemporaryDirectory(prefix="facefoundry-gx-") as gx_dir,
    ):
        judged = judge_dataset(source, judges, ident.judge_max_images, ident.batch_size, cfg.base.seed, memo)
        for name, res in judged.items():
            metrics.update({f"judge_{name}_{k}": v for k, v in res["metrics"].items()})
            log(
                f"judge {name}: intra-identity cosine {res['metrics']['intra_mean']:.3f}, "
                f"inter-identity {res['metrics']['inter_mean']:.3f}"
            )
        report = measure_dataset(
            source, cfg.quality, ident.batch_size, cfg.base.seed, digest, sha256, log=log, memo=memo, judge=judge
        )
        metrics.update(report.metrics)
        _log_quality(folder, report, judged)
        log_image(dataset_grid(source, seed=cfg.base.seed), "samples/grid.png")
        by_setting = setting_grid(source, seed=cfg.base.seed)
        if by_setting is not None:  # one image per σ (Vec2Face): what the setting does, side by side
            log_figure(by_setting, "samples/grid_by_setting.png")
        atomic_write_json(products / "problems.json", report.problems)
        log_artifact(products / "problems.json", "quality")
        gate = run_gates(
            _gate_frame(source, sha256, cfg.base.image_size), metrics, cfg.quality.gates, cfg.base.image_size, gx_dir
        )
        atomic_write_json(products / "gates.json", gate.to_json())
        log_artifact(products / "gates.json", "quality")
        if cfg.quality.gates.enabled:
            log_artifact(gate.result_json, "quality")
            if gate.docs_dir is not None:
                log_artifact(gate.docs_dir, "quality/data_docs")
        set_tag("facefoundry.quality_gates", "passed" if gate.success else "failed")
        metrics["gates_failed"] = len(gate.failures)
        log_metrics({f"data/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
        log_dataset_version(folder, context="validation", digest=digest)
        log(
            f"{folder}: identities separable {metrics['separability']:.2f}, intra {metrics['intra_mean']:.3f} / "
            f"inter {metrics['inter_mean']:.3f} (judge {judge.label}{', a teacher' if judge.is_teacher else ''}, "
            f"centred), {metrics['leaked_identities']} leaked, {metrics['near_duplicate_images']} near duplicates"
        )
        if not gate.success:
            raise FaceFoundryError(f"{folder}: {gate.summary()} (details: {products}/gates.json, problems.json)")
        log(gate.summary())
        # which encoder produced the identity metrics (intra/inter, separability, mislabelled, leaked)
        metrics["judge"] = judge.label
        atomic_write_json(out or products / "metrics.json", metrics)
        log(f"{folder}: valid ({metrics['images']} images, {metrics['identities']} identities)")
        return metrics
