"""Which identities of which source enter a fused dataset: pure functions on identity centres.

- ``quotas``: identities per source from counts (``identities``) or shares of a total (``share``);
- ``candidate_order``: a source's identities in the order they are taken: ``uniform`` (a seeded random
  order) or ``intra_variance`` (most varied identities first: 1 − mean cosine of its images to its centre,
  the targeted strategy the Dataset Fusion seed suggests for future work);
- ``cross_overlap``: every pair of identities of two sources whose centres are at least ``threshold`` alike;
- ``select``: sources in order, each taking candidates until its quota is met. A candidate that overlaps an
  identity already taken from an earlier source is dropped (the next candidate replaces it), merged into that
  identity (its images join it under one label) or kept as a separate identity, as ``overlap`` says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facefoundry.errors import FaceFoundryError


@dataclass
class SourceIdentities:
    """One source's identities: unit centres (judge space), labels, and per-identity intra-class variance."""

    name: str
    labels: np.ndarray  # [C] the source's label of each centre
    centres: np.ndarray  # [C, d]
    variance: np.ndarray  # [C] 1 − mean cos(image, centre)
    excluded: set[int] = field(default_factory=set)  # labels never taken (e.g. leaked)


@dataclass
class Selection:
    """``taken[source]``: the source labels taken, in order; ``target[source][label]``: the fused label."""

    taken: dict[str, list[int]]
    target: dict[str, dict[int, int]]
    num_classes: int
    overlaps: list[dict]  # every cross-source pair ≥ threshold among all identities
    dropped: dict[str, list[int]]  # overlapping candidates skipped
    merged: dict[str, list[int]]  # overlapping candidates merged into an earlier source's identity


def quotas(
    available: dict[str, int], counts: dict[str, int | None], shares: dict[str, float | None], total: int | None
) -> dict[str, int]:
    """Identities wanted from each source: its count, its share of ``total`` (largest remainders, so the
    shares add up to ``total`` exactly), or all it has."""
    out: dict[str, int] = {}
    with_share = {k: s for k, s in shares.items() if s is not None}
    if with_share:
        if total is None:
            raise FaceFoundryError("fuse.identities: shares need the fused total")
        fixed = sum(c for k, c in counts.items() if c is not None and k not in with_share)
        budget = total - fixed
        s = sum(with_share.values())
        raw = {k: budget * v / s for k, v in with_share.items()}
        base = {k: int(np.floor(v)) for k, v in raw.items()}
        for k in sorted(raw, key=lambda k: -(raw[k] - base[k]))[: budget - sum(base.values())]:
            base[k] += 1
        out.update(base)
    for k in available:
        if k not in out:
            count = counts.get(k)
            out[k] = count if count is not None else available[k]
    return {k: out[k] for k in available}


def candidate_order(src: SourceIdentities, strategy: str, rng: np.random.Generator) -> list[int]:
    """Indices into ``src.centres`` in the order they are taken (excluded labels left out)."""
    keep = np.array([i for i, lab in enumerate(src.labels) if int(lab) not in src.excluded], dtype=int)
    if strategy == "uniform":
        return rng.permutation(keep).tolist()
    if strategy == "intra_variance":
        return keep[np.argsort(-src.variance[keep], kind="stable")].tolist()
    raise FaceFoundryError(f"fuse.strategy: unknown {strategy!r} (uniform | intra_variance)")


def cross_overlap(a: SourceIdentities, b: SourceIdentities, threshold: float) -> list[dict]:
    """Pairs (a's label, b's label, cosine) of centres at least ``threshold`` alike, most alike first."""
    if not len(a.centres) or not len(b.centres):
        return []
    sims = a.centres @ b.centres.T
    i, j = np.nonzero(sims >= threshold)
    order = np.argsort(-sims[i, j], kind="stable")
    return [
        {
            "a": a.name,
            "a_label": int(a.labels[i[k]]),
            "b": b.name,
            "b_label": int(b.labels[j[k]]),
            "similarity": round(float(sims[i[k], j[k]]), 4),
        }
        for k in order
    ]


def select(
    sources: list[SourceIdentities],
    wanted: dict[str, int],
    strategy: str,
    overlap: str,
    threshold: float,
    seed: int,
    every: frozenset[str] = frozenset(),
) -> Selection:
    """Take ``wanted[name]`` identities of each source, in source order (see the module docstring). A source in
    ``every`` (neither a count nor a share: all it has) gives what the overlap check leaves of it, however many."""
    if overlap not in ("drop", "merge", "keep"):
        raise FaceFoundryError(f"fuse.overlap: unknown {overlap!r} (drop | merge | keep)")
    rng = np.random.default_rng(seed)
    overlaps = [p for i, a in enumerate(sources) for b in sources[i + 1 :] for p in cross_overlap(a, b, threshold)]
    taken: dict[str, list[int]] = {}
    target: dict[str, dict[int, int]] = {}
    dropped: dict[str, list[int]] = {}
    merged: dict[str, list[int]] = {}
    chosen_centres: list[np.ndarray] = []  # one per fused label
    chosen_from: list[str] = []  # its source: overlap is checked across sources only
    n = 0
    for src in sources:
        taken[src.name], target[src.name], dropped[src.name], merged[src.name] = [], {}, [], []
        need = wanted[src.name]
        for i in candidate_order(src, strategy, rng):
            if len(taken[src.name]) >= need:
                break
            lab = int(src.labels[i])
            hit = None
            others = [k for k, name in enumerate(chosen_from) if name != src.name]
            if others and overlap != "keep":
                sims = np.stack([chosen_centres[k] for k in others]) @ src.centres[i]
                j = int(np.argmax(sims))
                hit = others[j] if sims[j] >= threshold else None
            if hit is not None and overlap == "drop":
                dropped[src.name].append(lab)
                continue
            taken[src.name].append(lab)
            if hit is not None:  # merge: its images join the earlier identity
                target[src.name][lab] = hit
                merged[src.name].append(lab)
            else:
                target[src.name][lab] = n
                chosen_centres.append(src.centres[i])
                chosen_from.append(src.name)
                n += 1
        if len(taken[src.name]) < need and src.name not in every:
            lost = len(src.excluded) + len(dropped[src.name])
            raise FaceFoundryError(
                f"fuse.sources.{src.name}: {need} identities wanted, only {len(taken[src.name])} available "
                f"({len(src.labels)} in the dataset, {lost} excluded as leaked or overlapping)"
            )
    return Selection(taken, target, n, overlaps, dropped, merged)
