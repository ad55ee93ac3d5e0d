"""Measure a dataset once per version: files, identities in a judge's space, leakage, a reference set.

``measure_dataset`` is the orchestrator behind the ``validate`` stage (and the identity half of ``fuse``):
it embeds up to ``quality.images_per_identity`` images of every identity with the judge encoder (cached by
the dataset's DVC hash and the encoder's spec), then calls the pure functions of ``quality.metrics``. The
judge is resolved per dataset (:mod:`facefoundry.quality.judging`): by default an encoder that neither
conditioned nor trained the dataset's generator, with the thresholds set for that judge.

Identity metrics use the centred space when ``quality.centred`` (each set minus its own mean vector, then
renormalised): dlib places any two faces at cosine ≈ 0.9, the centred space at ≈ 0, as ArcFace does.
Leakage compares each identity centre with *every* image of a reference, so its threshold must sit above
the maximum over thousands of unrelated faces. Measured (dlib, centred): celeba_val's same-person pairs have
median 0.64 and different-person pairs at most 0.52, but a real training photo's highest cosine to any of
celeba_val's 2,580 images is 0.55 at the median, 0.65 at the 90th and 0.75 at the 99th percentile (unrelated
people, or CelebA people in both). Hence the threshold 0.75: about 1 % false alarms on real faces. SFace's
0.45 is matched to it on the real benchmark (``benchmarks/leakage_threshold.py``, docs/results/judges.md).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facefoundry.config import QualityCfg
from facefoundry.data.sources import FaceSource, open_source
from facefoundry.identity.base import IdentityEncoder
from facefoundry.identity.judge import identity_similarities
from facefoundry.identity.store import embed_rows, source_keys
from facefoundry.io import atomic_write_bytes, atomic_write_json, cache_dir, read_json
from facefoundry.quality import metrics as M
from facefoundry.quality.judging import Judge, judge_threshold, read_meta, resolve_judge
from facefoundry.quality.references import _key, _stamp, reference_vectors, training_photos

FORMAT = 3  # bump when a cached report's meaning changes (2: the judge is resolved per dataset and recorded; 3: a
# generator trained on generated faces has no training-photo leakage reference)


@dataclass
class Vectors:
    """A judge's unit vectors of some images of a dataset (``index`` into it) and their labels."""

    index: np.ndarray
    labels: np.ndarray
    emb: np.ndarray


@dataclass
class QualityReport:
    """Every metric (flat, for MLflow, DVC and the gates) and the details behind them (plots, lists)."""

    metrics: dict[str, float]
    intra: np.ndarray = field(default_factory=lambda: np.zeros(0))
    inter: np.ndarray = field(default_factory=lambda: np.zeros(0))
    centres: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    centre_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    centre_sources: list[str] = field(default_factory=list)
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    problems: dict[str, list] = field(default_factory=dict)  # leaked / mislabelled / near_duplicates / duplicates
    judge: dict = field(default_factory=dict)  # the encoder behind the identity metrics: name, teachers, thresholds

    def save(self, path: Path) -> None:
        buf = io.BytesIO()
        np.savez(
            buf,
            intra=self.intra,
            inter=self.inter,
            centres=self.centres,
            centre_labels=self.centre_labels,
            counts=self.counts,
        )
        atomic_write_bytes(path.with_suffix(".npz"), buf.getvalue())
        atomic_write_json(
            path.with_suffix(".json"),
            {
                "format": FORMAT,
                "metrics": self.metrics,
                "centre_sources": self.centre_sources,
                "problems": self.problems,
                "judge": self.judge,
            },
        )

    @classmethod
    def load(cls, path: Path) -> QualityReport | None:
        meta = read_json(path.with_suffix(".json"))
        if meta.get("format") != FORMAT or not path.with_suffix(".npz").is_file():
            return None
        try:
            arr = np.load(path.with_suffix(".npz"))
            return cls(
                metrics=meta["metrics"],
                centre_sources=meta["centre_sources"],
                problems=meta["problems"],
                judge=meta.get("judge") or {},
                **{k: arr[k] for k in ("intra", "inter", "centres", "centre_labels", "counts")},
            )
        except (OSError, ValueError, KeyError):
            return None


def sample_per_identity(labels: np.ndarray, per_identity: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``per_identity`` random images of every identity (all of each, when fewer)."""
    labels = np.asarray(labels)
    order = rng.permutation(len(labels))
    ranked = order[np.argsort(labels[order], kind="stable")]  # grouped by label, random within a label
    lab = labels[ranked]
    starts = np.r_[0, np.flatnonzero(np.diff(lab)) + 1]
    rank = np.arange(len(lab)) - np.repeat(starts, np.diff(np.r_[starts, len(lab)]))
    return np.sort(ranked[rank < per_identity])


class EmbeddingMemo:
    """Each image of one source embedded at most once per encoder, whoever asks (the validate stage's judges
    and its quality metrics share one dlib pass over the images both sample)."""

    def __init__(self, source: FaceSource):
        self.source = source
        self._rows: dict[str, dict[int, np.ndarray]] = {}

    def embed(self, encoder: IdentityEncoder, idx: np.ndarray, batch_size: int, desc: str) -> np.ndarray:
        """Unit vectors of images ``idx`` (rows in that order), computing only those not embedded yet."""
        done = self._rows.setdefault(json.dumps(encoder.spec(), sort_keys=True, default=str), {})
        missing = np.asarray([int(i) for i in dict.fromkeys(np.asarray(idx).tolist()) if int(i) not in done], int)
        if len(missing):
            rows = embed_rows(self.source.load, missing, encoder, batch_size, desc, source_keys(self.source, missing))
            for i, row in zip(missing, rows):
                done[int(i)] = row
        return np.stack([done[int(i)] for i in idx]) if len(idx) else np.zeros((0, encoder.dim), np.float32)


def judge_vectors(
    source: FaceSource,
    encoder: IdentityEncoder,
    per_identity: int,
    batch_size: int,
    seed: int,
    digest: str | None = None,
    memo: EmbeddingMemo | None = None,
) -> Vectors:
    """Unit judge vectors of up to ``per_identity`` images of every identity; cached when ``digest`` is given,
    and taken from (or added to) ``memo`` when one is given."""
    idx = sample_per_identity(source.labels, per_identity, np.random.default_rng(seed))
    path = None
    if digest:
        path = cache_dir("quality") / f"vectors-{_key([digest, encoder.spec(), per_identity, seed, len(source)])}.npy"
        if path.is_file():
            try:
                emb = np.load(path)
                if emb.shape == (len(idx), encoder.dim):
                    return Vectors(idx, np.asarray(source.labels)[idx], emb)
            except (OSError, ValueError):
                pass
    desc = f"judge {encoder.name} on {source.root.name}"
    emb = (
        memo.embed(encoder, idx, batch_size, desc)
        if memo
        else embed_rows(source.load, idx, encoder, batch_size, desc, source_keys(source, idx))
    )
    if path is not None:
        buf = io.BytesIO()
        np.save(buf, emb)
        with contextlib.suppress(OSError):  # an unwritable cache costs the next run another pass
            atomic_write_bytes(path, buf.getvalue())
    return Vectors(idx, np.asarray(source.labels)[idx], emb)


def poses(params: list[str]) -> dict[str, np.ndarray]:
    """Per-image yaw / pitch / roll (degrees, NaN where unrecorded) from a manifest's ``params`` column: the
    renderer records them under ``variation``, Vec2Face's AttrOP the yaw it reached."""
    out = {k: np.full(len(params), np.nan) for k in ("yaw", "pitch", "roll")}
    for i, raw in enumerate(params):
        p = json.loads(raw) if raw else {}
        for scope in (p, p.get("variation") or {}, p.get("pose") or {}):
            for k in out:
                if isinstance(scope.get(k), (int, float)):
                    out[k][i] = float(scope[k])
        yaw = (p.get("attrop") or {}).get("yaw_reached")
        if isinstance(yaw, (int, float)) and np.isnan(out["yaw"][i]):
            out["yaw"][i] = float(yaw)
    return {k: v for k, v in out.items() if not np.isnan(v).all()}


def measure_dataset(
    folder: str | Path | FaceSource,
    q: QualityCfg,
    batch_size: int,
    seed: int,
    digest: str | None = None,
    sha256: list[str] | None = None,
    log: Callable[[str], None] = print,
    memo: EmbeddingMemo | None = None,
    judge: Judge | None = None,
) -> QualityReport:
    """All data metrics of one dataset (see the module docstring); cached by ``digest``, the settings and the
    judge.

    ``folder``: the dataset folder, or a source already open (``sources.MemorySource``: decoded once);
    ``memo``: judge vectors shared with other measurements of the same source; ``judge``: resolved already
    (else from ``q`` and the dataset's manifest, :func:`dataset_judge`)."""
    src = folder if isinstance(folder, FaceSource) else open_source(folder)
    folder = src.root
    judge = judge or dataset_judge(q, src, log)
    leak_at = judge_threshold(q.leakage.threshold, judge, "quality.leakage.threshold")
    separable_below = judge_threshold(q.separability_threshold, judge, "quality.separability_threshold")
    judged = {
        "name": judge.name,
        "label": judge.label,
        "auto": judge.auto,
        "teachers": list(judge.teachers),
        "is_teacher": judge.is_teacher,
        "leakage_threshold": leak_at,
        "separability_threshold": separable_below,
    }
    refs = [(None, r) for r in q.leakage.references] + (training_photos(folder) if q.leakage.training_photos else [])
    cache = None
    if digest:
        stamps = [(scope, _stamp(r)) for scope, r in refs]
        parts = [FORMAT, digest, q.model_dump(mode="json"), stamps, seed, judge.name]
        cache = cache_dir("quality") / f"report-{_key(parts)}"
        hit = QualityReport.load(cache)
        if hit is not None:
            log(f"{folder}: data metrics cached ({cache}.json)")
            return hit
    from facefoundry.identity import load_encoder

    labels = np.asarray(src.labels)
    counts = np.bincount(labels, minlength=src.num_classes)
    manifest = getattr(src, "manifest", None)  # a manifest dataset's table (sources, params, hashes)
    names = manifest.path if manifest is not None else [src.name(i) for i in range(len(src))]
    out: dict[str, float] = {
        "images": len(src),
        "identities": int(src.num_classes),
        "images_per_identity_min": int(counts.min()),
        "images_per_identity_mean": float(counts.mean()),
        "images_per_identity_max": int(counts.max()),
        "judged_by_teacher": int(judge.is_teacher),
    }
    problems: dict[str, list] = {}

    # exact and near duplicates, over every image
    hashes = sha256 if sha256 is not None else (manifest.sha256 if manifest is not None else None)
    if hashes is not None:
        groups: dict[str, list[int]] = {}
        for i, h in enumerate(hashes):
            groups.setdefault(h, []).append(i)
        dups = [g for g in groups.values() if len(g) > 1]
        out["duplicate_images"] = int(sum(len(g) - 1 for g in dups))
        problems["duplicates"] = [[names[i] for i in g[:20]] for g in dups[:200]]
    ph = np.concatenate(
        [M.phash(np.stack([src.load(i) for i in range(s, min(s + 512, len(src)))])) for s in range(0, len(src), 512)]
    )
    near = M.near_duplicates(ph, q.near_duplicate_bits)
    out["near_duplicate_images"] = int(sum(len(g) - 1 for g in near))
    problems["near_duplicates"] = [
        [names[i] for i in g[:20]] + ([f"… {len(g) - 20} more"] if len(g) > 20 else []) for g in near[:200]
    ]

    # identities in the judge's space
    enc = load_encoder(judge.name)
    vec = judge_vectors(src, enc, q.images_per_identity, batch_size, seed, digest, memo)
    emb = M.centre_space(vec.emb)[0] if q.centred else vec.emb
    intra, inter = identity_similarities(emb, vec.labels, rng=np.random.default_rng(seed))
    out.update(
        {
            "intra_mean": float(intra.mean()) if intra.size else float("nan"),
            "inter_mean": float(inter.mean()) if inter.size else float("nan"),
            "intra_std": float(intra.std()) if intra.size else float("nan"),
            "inter_std": float(inter.std()) if inter.size else float("nan"),
        }
    )
    if intra.size and inter.size:
        out["js_intra_inter"] = M.js_divergence(intra, inter, q.js_bins)
    centres, classes = M.identity_centres(emb, vec.labels)
    sep = M.separability(centres, separable_below)
    out["separable_identities"] = int(sep["separable_identities"])
    out["separability"] = float(sep["separability"])
    mis = M.mislabelled(emb, vec.labels, q.mislabel_margin, q.mislabel_min_share)
    out["mislabelled_fraction"] = float(mis["fraction"])
    out["mislabelled_identities"] = len(mis["identities"])
    ident = list(src.identities)
    problems["mislabelled"] = [
        {
            "image": names[int(vec.index[i])],
            "identity": ident[int(vec.labels[i])],
            "nearer_to": ident[int(mis["nearest"][i])],
        }
        for i in mis["images"][:200]
    ]
    problems["split_identities"] = [ident[int(c)] for c in mis["identities"]]

    src_names = manifest.source if manifest is not None else ["dataset"] * len(src)
    centre_sources = [src_names[int(vec.index[np.flatnonzero(vec.labels == c)[0]])] for c in classes]
    # leakage: identity centres against every image of each reference (each centred by its own mean)
    leaked: dict[int, dict] = {}
    for scope, ref in refs:
        r = reference_vectors(ref, enc, q.leakage.max_reference_images, batch_size, seed)
        r = M.centre_space(r)[0] if q.centred else r
        lk = M.leakage(centres, r, leak_at)
        for found in lk["identities"]:
            c = int(found)
            if scope is not None and centre_sources[c] != scope:
                continue
            if c not in leaked or lk["max_similarity"][c] > leaked[c]["similarity"]:
                leaked[c] = {
                    "identity": ident[int(classes[c])],
                    "label": int(classes[c]),
                    "reference": str(ref),
                    "reference_image": int(lk["nearest"][c]),
                    "similarity": round(float(lk["max_similarity"][c]), 4),
                }
    out["leaked_identities"] = len(leaked)
    problems["leaked"] = sorted(leaked.values(), key=lambda d: -d["similarity"])

    # distribution against a reference set, in a feature encoder's space
    if q.reference:
        fenc = load_encoder(q.feature_encoder) if q.feature_encoder else enc
        feats = (
            vec.emb
            if fenc is enc
            else judge_vectors(src, fenc, q.images_per_identity, batch_size, seed, digest, memo).emb
        )
        ref_emb = reference_vectors(q.reference, fenc, q.reference_max_images, batch_size, seed)
        out["frechet_distance"] = M.frechet_distance(ref_emb, feats)
        out["kernel_mmd"] = M.kernel_mmd(ref_emb, feats)
        out["density"], out["coverage"] = M.density_coverage(ref_emb, feats, q.nearest_k)
        rng = np.random.default_rng(seed)
        mine = M.centre_space(feats)[0] if q.centred else feats
        theirs = M.centre_space(ref_emb)[0] if q.centred else ref_emb
        out["js_reference"] = M.js_divergence(_pair_sims(mine, rng), _pair_sims(theirs, rng), q.js_bins)

    if manifest is not None:
        angles = poses(manifest.params)
        out.update(M.pose_summary(angles))
    rep = QualityReport(
        metrics=out,
        intra=intra,
        inter=inter,
        centres=centres,
        centre_labels=classes,
        centre_sources=centre_sources,
        counts=counts,
        problems=problems,
        judge=judged,
    )
    if cache is not None:
        with contextlib.suppress(OSError):
            rep.save(cache)
    return rep


def dataset_judge(q: QualityCfg, dataset: FaceSource | str | Path, log: Callable[[str], None] | None = print) -> Judge:
    """``quality.judge`` resolved for a dataset (an open source or a folder): its manifest metadata names the
    generator's teachers (:mod:`facefoundry.quality.judging`)."""
    manifest = getattr(dataset, "manifest", None) if isinstance(dataset, FaceSource) else None
    if manifest is not None:
        meta = manifest.meta
    else:
        meta = read_meta(dataset.root if isinstance(dataset, FaceSource) else dataset)
    return resolve_judge(q.judge, q.judge_order, meta, log)


def _pair_sims(emb: np.ndarray, rng: np.random.Generator, pairs: int = 20000) -> np.ndarray:
    """Cosine similarities of random pairs of different rows."""
    i = rng.integers(0, len(emb), pairs)
    j = (i + rng.integers(1, len(emb), pairs)) % len(emb)
    return np.einsum("nd,nd->n", emb[i], emb[j])
