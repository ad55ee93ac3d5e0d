"""Fuse datasets: embed every source's identities, check cross-source overlap, select, write one dataset.

Images are copied byte for byte, so their hashes survive (no hard links: DVC may make its cache
read-only, and a link would share that with the source dataset); labels
are renumbered into one range; every row records its source (the fusion's name for it) and where it came
from (``params.fused_from``). The manifest's meta records the recipe, the counts and the overlap report.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from facefoundry.config import Config
from facefoundry.data.manifest import Manifest, write_manifest
from facefoundry.data.sources import FaceSource, open_source
from facefoundry.errors import FaceFoundryError
from facefoundry.fusion.select import Selection, SourceIdentities, quotas, select
from facefoundry.identity.base import IdentityEncoder
from facefoundry.io import atomic_dir
from facefoundry.progress import track
from facefoundry.quality import metrics as M
from facefoundry.quality.judging import Judge, judge_threshold, resolve_judge
from facefoundry.quality.measure import judge_vectors
from facefoundry.quality.references import reference_vectors, training_photos

_MAGIC = {b"\x89PNG": "png", b"\xff\xd8\xff": "jpg", b"RIFF": "webp", b"BM": "bmp"}


@dataclass
class FuseResult:
    out: Path
    selection: Selection
    sources: list[SourceIdentities]
    leaked: dict[str, list[int]]
    metrics: dict[str, float]


def _ext(data: bytes, name: str) -> str:
    for magic, ext in _MAGIC.items():
        if data.startswith(magic):
            return ext
    return Path(name).suffix.lstrip(".") or "img"


def source_identities(
    name: str, src: FaceSource, enc: IdentityEncoder, cfg: Config, digest: str | None
) -> SourceIdentities:
    """Unit centres of every identity of ``src`` in the judge's (centred) space, and their intra-class variance."""
    q = cfg.quality
    vec = judge_vectors(src, enc, q.images_per_identity, cfg.identity.batch_size, cfg.base.seed, digest)
    emb = M.centre_space(vec.emb)[0] if q.centred else vec.emb
    centres, labels = M.identity_centres(emb, vec.labels)
    pos = np.searchsorted(labels, vec.labels)
    cos = np.einsum("nd,nd->n", emb, centres[pos])
    variance = 1 - np.bincount(pos, cos, len(labels)) / np.maximum(np.bincount(pos, minlength=len(labels)), 1)
    return SourceIdentities(name, labels, centres, variance)


def fusion_judge(cfg: Config, log: Callable[[str], None] | None = print) -> Judge:
    """The judge every source of a fusion is embedded with (one space for all): ``quality.judge`` resolved
    against the union of the sources' teachers, as ``validate`` resolves it for the fused dataset."""
    meta = {"generator": "fusion", "fusion": {"sources": {n: {"path": s.path} for n, s in cfg.fuse.sources.items()}}}
    return resolve_judge(cfg.quality.judge, cfg.quality.judge_order, meta, log)


def leaked_labels(
    ident: SourceIdentities, path: str, enc: IdentityEncoder, cfg: Config, judge: Judge | str | None = None
) -> list[int]:
    """Labels of ``ident`` whose centre is within the leakage threshold (``judge``'s; less ``drop_margin``) of
    any reference image. The margin: the gate measures again on the fused set, centred by that set's mean and
    on other sampled images, and a borderline identity must not cross the threshold there (measured at a
    threshold of 0.65: dropping the 9 Vec2Face-real identities above it made 3 others reach it)."""
    q = cfg.quality
    at = judge_threshold(q.leakage.threshold, judge or enc.name, "quality.leakage.threshold")
    # a source that is itself a fusion: its sources' training photos, for all its identities (conservative)
    photos = [p for _, p in training_photos(path)] if q.leakage.training_photos else []
    refs = list(dict.fromkeys([*q.leakage.references, *photos]))
    out: set[int] = set()
    for ref in refs:
        r = reference_vectors(ref, enc, q.leakage.max_reference_images, cfg.identity.batch_size, cfg.base.seed)
        r = M.centre_space(r)[0] if q.centred else r
        found = M.leakage(ident.centres, r, at - q.leakage.drop_margin)["identities"]
        out.update(int(ident.labels[c]) for c in found)
    return sorted(out)


def fuse(
    cfg: Config, digests: dict[str, str] | None = None, log: Callable[[str], None] = print, judge: Judge | None = None
) -> FuseResult:
    """Fuse ``cfg.fuse.sources`` into ``cfg.fuse.out`` (see the module docstring); ``judge``: resolved already
    (else :func:`fusion_judge`)."""
    f = cfg.fuse
    if len(f.sources) < 1:
        raise FaceFoundryError("fuse.sources: no datasets to fuse (give two or more: name → {path, identities|share})")
    from facefoundry.identity import load_encoder

    srcs = {name: open_source(s.path) for name, s in f.sources.items()}
    judge = judge or fusion_judge(cfg, log)
    overlap_at = judge_threshold(f.overlap_threshold, judge, "fuse.overlap_threshold")
    enc = load_encoder(judge.name)  # once: every source and reference in one space
    idents, leaked = [], {}
    for name, src in srcs.items():
        ident = source_identities(name, src, enc, cfg, (digests or {}).get(name))
        if cfg.quality.leakage.drop:
            leaked[name] = leaked_labels(ident, f.sources[name].path, enc, cfg, judge)
            ident.excluded = set(leaked[name])
        idents.append(ident)
    available = {i.name: len(i.labels) - len(i.excluded) for i in idents}  # "all": all not leaked
    wanted = quotas(
        available,
        {n: s.identities for n, s in f.sources.items()},
        {n: s.share for n, s in f.sources.items()},
        f.identities,
    )
    every = frozenset(n for n, s in f.sources.items() if s.identities is None and s.share is None)
    sel = select(idents, wanted, f.strategy, f.overlap, overlap_at, cfg.base.seed, every)
    for p in sel.overlaps[:20]:
        log(
            f"overlap: {p['a']}/{srcs[p['a']].identities[p['a_label']]} ~ {p['b']}/{srcs[p['b']].identities[p['b_label']]}"
            f" (cosine {p['similarity']:.3f})"
        )
    metrics: dict[str, float] = {"identities": sel.num_classes, "overlapping_pairs": len(sel.overlaps)}
    for name in srcs:
        metrics[f"{name}_identities"] = len(sel.taken[name]) - len(sel.merged[name])
        metrics[f"{name}_dropped_overlap"] = len(sel.dropped[name])
        metrics[f"{name}_merged_overlap"] = len(sel.merged[name])
        metrics[f"{name}_dropped_leaked"] = len(leaked.get(name, []))
    meta = {
        "generator": "fusion",
        "num_classes": sel.num_classes,
        "fusion": {
            "sources": {n: s.model_dump(mode="json") for n, s in f.sources.items()},
            "identities": f.identities,
            "strategy": f.strategy,
            "overlap": f.overlap,
            "overlap_threshold": overlap_at,  # for the judge below
            "judge": judge.name,
            "centred": cfg.quality.centred,
            "seed": cfg.base.seed,
            "taken": metrics,
        },
        # lists stay out of the "fusion" recipe (MLflow params of every run trained on it)
        "teachers": list(judge.teachers),  # the sources' teachers: the fused dataset's judge ≠ any of them
        "fusion_overlaps": sel.overlaps[:1000],
        "fusion_leaked": leaked,
    }
    sizes = {int(s.manifest.meta.get("image_size", 0)) for s in srcs.values() if hasattr(s, "manifest")}
    if len(sizes) == 1 and 0 not in sizes:
        meta["image_size"] = sizes.pop()
    _write(Path(f.out), srcs, sel, meta)
    metrics["images"] = _count(Path(f.out))
    taken = ", ".join(f"{n}: {int(metrics[n + '_identities'])}" for n in srcs)
    log(f"fused {taken} identities ({len(sel.overlaps)} overlapping pairs across sources) → {f.out}")
    return FuseResult(Path(f.out), sel, idents, leaked, metrics)


def _count(out: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(out / "manifest.parquet").num_rows


def _write(out: Path, srcs: dict[str, FaceSource], sel: Selection, meta: dict) -> None:
    rows = [(name, i) for name, src in srcs.items() for i in range(len(src)) if int(src.labels[i]) in sel.target[name]]
    names: dict[int, str] = {}  # fused label → identity name (the first source's, for merged identities)
    collapsed = 0  # soft labels whose partner identity was not fused
    with atomic_dir(out) as tmp:
        m = Manifest(meta=meta)
        for name, i in track(rows, total=len(rows), desc=f"fuse → {out.name}", unit="img"):
            src = srcs[name]
            old = int(src.labels[i])
            new = sel.target[name][old]
            names.setdefault(new, f"{name}/{src.identities[old]}")
            data, where = src.raw(i)
            rel = f"images/{new:06d}/{len(m):07d}.{_ext(data, where)}"
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)
            params = json.loads(src.manifest.params[i]) if hasattr(src, "manifest") else {}
            params["fused_from"] = {
                "source": name,
                "dataset": str(src.root),
                "image": where,
                "label": old,
                "identity": src.identities[old],
            }
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
            partner, phi = -1, 1.0
            if src.mix_labels is not None and src.mix_labels[i] >= 0:  # a soft label: the partner's fused label
                partner = sel.target[name].get(int(src.mix_labels[i]), -1)
                if partner >= 0 and partner != new:
                    assert src.mix_weights is not None  # sources set mix_weights with mix_labels
                    phi = float(src.mix_weights[i])
                else:  # partner not taken (or merged into this identity): the image keeps its own label only
                    partner = -1
                    collapsed += 1
            m.add(rel, new, names[new], name, params, data, w, h, partner, phi)
        m.meta["num_classes"] = sel.num_classes
        if collapsed:
            m.meta["soft_labels_collapsed"] = collapsed
        write_manifest(tmp, m)
