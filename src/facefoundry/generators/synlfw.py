"""Syn-LFW (SynFace, Qiu et al. 2021): a synthetic twin of a verification benchmark, as an insightface ``.bin``.

The twin copies the reference's pair count and same/different (``issame``) sequence in order, so the
evaluator's 10 contiguous folds hold the same kinds of pairs; its identities are unseen (sampled with
their own seed, kept clear of the training identities). Every pair has its own identities: a positive
pair shows one identity twice, a negative pair two others. Syn-LFW-R mixes each image's identity
parameters with a random other benchmark identity, ``α = R·α_own + (1 − R)·α_partner``, drawn from a
random stream of its own, so R = 1 renders exactly the plain Syn-LFW.

The render generator draws pose, expression and illumination from the benchmark's renderer config
(``generate.render`` deep-merged with ``benchmark.render``) or takes them from ``synlfw.table``; any
other registered generator makes 2 images of each needed identity in a temporary dataset, from which
the pairs are assembled. A sidecar ``<out>.json`` records how the file was made.
"""

from __future__ import annotations

import csv
import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from facefoundry.config import Config, deep_merge, format_validation_error
from facefoundry.errors import FaceFoundryError
from facefoundry.io import atomic_write_json
from facefoundry.sampling.mixup import IdentityMix, draw_partners, mix_vectors
from facefoundry.verification.binfile import read_bin, write_bin


def sidecar_path(out: str | Path) -> Path:
    """Where the record of a Syn-LFW ``.bin`` lives: ``<out>.json``."""
    return Path(f"{out}.json")


def reference_issame(cfg: Config) -> tuple[np.ndarray, str | None]:
    """The issame sequence to copy (``synlfw.like``), or ``benchmark.pairs`` alternating same/different."""
    like = cfg.synlfw.like
    if like:
        return read_bin(like).issame.copy(), str(like)
    return np.arange(cfg.benchmark.pairs) % 2 == 0, None


def pair_plan(issame: np.ndarray) -> tuple[np.ndarray, int]:
    """``([pairs, 2] identity labels, identities)``: identities in pair order, none shared between pairs."""
    plan = np.empty((len(issame), 2), dtype=np.int64)
    nxt = 0
    for p, same in enumerate(issame):
        if same:
            plan[p] = nxt
            nxt += 1
        else:
            plan[p] = (nxt, nxt + 1)
            nxt += 2
    return plan, nxt


def read_table(path: str | Path, rows: int) -> dict[str, np.ndarray]:
    """``synlfw.table``: column → per-image values (``rows`` of them), columns naming renderer variations."""
    from facefoundry.generators.render.renderer import VARIATION_RANGES

    path = Path(path)
    if not path.is_file():
        raise FaceFoundryError(f"{path}: Syn-LFW table does not exist (synlfw.table)")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            lines = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FaceFoundryError(f"{path}: unreadable Syn-LFW table ({exc})".splitlines()[0]) from None
    lines = [ln for ln in lines if any(c.strip() for c in ln)]  # blank lines (a trailing newline) are no rows
    if not lines:
        raise FaceFoundryError(f"{path}: empty Syn-LFW table; the first line names the columns (yaw, smile, …)")
    header = [c.strip() for c in lines[0]]
    unknown = [c for c in header if c not in VARIATION_RANGES]
    if unknown:
        raise FaceFoundryError(
            f"{path}: unknown column {unknown[0]!r}; columns name renderer variations: {', '.join(VARIATION_RANGES)}"
        )
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise FaceFoundryError(f"{path}: column {dup[0]!r} appears twice")
    body = lines[1:]
    if len(body) != rows:
        raise FaceFoundryError(
            f"{path}: {len(body)} data rows; Syn-LFW needs one per image, {rows} (2 × {rows // 2} pairs)"
        )
    out = {c: np.empty(rows) for c in header}
    for r, line in enumerate(body):
        if len(line) != len(header):
            raise FaceFoundryError(f"{path}: line {r + 2} has {len(line)} fields, the header {len(header)}")
        for c, cell in zip(header, line):
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise FaceFoundryError(f"{path}: line {r + 2}, column {c!r}: {cell.strip()!r} is not a finite number")
            out[c][r] = value
    return out


@dataclass(frozen=True)
class SynlfwPlan:
    """What Syn-LFW will be, every input checked: the issame sequence and where it came from, the pair plan,
    the number of unseen identities and the renderer-variation table."""

    issame: np.ndarray
    reference: str | None
    plan: np.ndarray
    identities: int
    table: dict[str, np.ndarray] | None


def plan_synlfw(cfg: Config) -> SynlfwPlan:
    """Read and check every input of Syn-LFW (the benchmark it copies, the table, the generator's name): a bad
    one is one line here, before a run is opened or any image made."""
    s = cfg.synlfw
    issame, reference = reference_issame(cfg)
    plan, n_ids = pair_plan(issame)
    if s.ratio < 1 and n_ids < 2:
        raise FaceFoundryError("synlfw.ratio < 1 mixes identities, which needs at least 2 of them")
    if s.table and s.generator != "render":
        raise FaceFoundryError(
            f"synlfw.table sets renderer variations; generator {s.generator!r} has none "
            "(use synlfw.generator: render or drop the table)"
        )
    table = read_table(s.table, 2 * len(issame)) if s.table else None
    if s.generator != "render":
        from facefoundry.generators.table import descriptor

        descriptor(s.generator).entry("generate")  # an unknown name: one line listing the generators
    return SynlfwPlan(issame, reference, plan, n_ids, table)


def make_synlfw(cfg: Config, log: Callable[[str], None] = print, planned: SynlfwPlan | None = None) -> Path:
    """Write Syn-LFW(-R) to ``synlfw.out`` (and its sidecar ``<out>.json``); returns the ``.bin`` path."""
    s = cfg.synlfw
    out = Path(s.out)
    p = planned or plan_synlfw(cfg)
    issame, reference, plan, n_ids, table = p.issame, p.reference, p.plan, p.identities, p.table
    log(
        f"Syn-LFW: {len(issame)} pairs ({int(issame.sum())} same) like {reference or 'alternating same/different'}, "
        f"{n_ids} unseen identities, R = {s.ratio:g}, generator {s.generator} → {out}"
    )
    if s.generator == "render":
        images, record = _render(cfg, plan, n_ids, table, log)
    else:
        images, record = _from_generator(cfg, plan, n_ids, log)
    write_bin(out, images, issame)
    atomic_write_json(
        sidecar_path(out),
        {
            "pairs": len(issame),
            "positives": int(issame.sum()),
            "identities": n_ids,
            "ratio": s.ratio,
            "generator": s.generator,
            "reference": reference,
            "table": s.table,
            "image_size": int(images.shape[1]),
            "seed": cfg.base.seed + s.seed_offset,
            **record,
        },
    )
    return out


def _mix_draws(cfg: Config, labels: np.ndarray, n_ids: int) -> IdentityMix | None:
    """Per image partner and ratio, from a stream of their own (R = 1: no draw at all, nothing else moves)."""
    if cfg.synlfw.ratio >= 1:
        return None
    rng = np.random.default_rng([cfg.base.seed + cfg.synlfw.seed_offset, 51])
    return draw_partners(labels, n_ids, np.array([cfg.synlfw.ratio]), rng)


def render_identities(cfg: Config, n: int) -> list:
    """The ``n`` Syn-LFW identities of the render generator: clear of the training identities by
    ``generate.min_identity_distance``, with their own seed."""
    from facefoundry.generators.render.generate import sample_identities

    g = cfg.generate
    train = np.stack([i.vector for i in sample_identities(g.identities, g.min_identity_distance, cfg.base.seed)])
    return sample_identities(n, g.min_identity_distance, cfg.base.seed + cfg.synlfw.seed_offset, train)


def _render(
    cfg: Config, plan: np.ndarray, n_ids: int, table: dict[str, np.ndarray] | None, log: Callable[[str], None]
) -> tuple[np.ndarray, dict]:
    from facefoundry.device import resolve_device
    from facefoundry.generators.render.generate import benchmark_render_cfg, render_batches
    from facefoundry.generators.render.renderer import FaceRenderer, Identity

    renderer = FaceRenderer(benchmark_render_cfg(cfg), cfg.base.image_size, resolve_device(cfg.base.device))
    idents = render_identities(cfg, n_ids)
    labels = plan.reshape(-1)
    rng = np.random.default_rng([cfg.base.seed + cfg.synlfw.seed_offset, 2])
    variations = renderer.sample_variations(len(labels), rng)
    for name, values in (table or {}).items():
        for v, x in zip(variations, values):
            v[name] = float(x)
    people = [idents[j] for j in labels]
    record: dict = {"image_labels": labels.tolist(), "mixed_images": 0}
    if table is not None:
        record["table_columns"] = sorted(table)
    mix = _mix_draws(cfg, labels, n_ids)
    if mix is not None:
        own = np.stack([p.vector for p in people])
        partners = np.stack([idents[max(int(q), 0)].vector for q in mix.partner])
        mixed = mix_vectors(own, partners, mix, renormalise=False)
        people = [Identity(mixed[j], p.texture_seed) for j, p in enumerate(people)]
        record.update(mixed_images=int(mix.mixed.sum()), partners=mix.partner.tolist())
    size = cfg.base.image_size
    images = np.empty((len(people), size, size, 3), np.uint8)
    for s, imgs, _ in render_batches(renderer, people, variations, cfg.generate.batch_size, log, "syn-lfw"):
        images[s : s + len(imgs)] = imgs
    return images, record


def generator_config(cfg: Config, n_ids: int, out: Path) -> Config:
    """The config a registered generator runs under for Syn-LFW: 2 images of each of ``n_ids`` identities in
    ``out``, seeded apart from training (``base.seed + synlfw.seed_offset``), identity mixup at R when R < 1."""
    s = cfg.synlfw
    mixup = {"enabled": True, "phi": [s.ratio]} if s.ratio < 1 else {"enabled": False}
    raw = deep_merge(
        cfg.model_dump(mode="json"),
        {
            "base": {"seed": cfg.base.seed + s.seed_offset},
            "generate": {
                "generator": s.generator,
                "identities": n_ids,
                "images_per_identity": 2,
                "out": str(out),
                "total_images": None,
                "identity_groups": None,
                "mixup": mixup,
            },
        },
    )
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise FaceFoundryError(format_validation_error(f"synlfw (generator {s.generator})", err)) from None


def _from_generator(cfg: Config, plan: np.ndarray, n_ids: int, log: Callable[[str], None]) -> tuple[np.ndarray, dict]:
    from facefoundry.data.sources import open_source
    from facefoundry.generators.table import descriptor

    name = cfg.synlfw.generator
    fn = descriptor(name).entry("generate")  # unknown name: one line listing the generators
    out = Path(cfg.synlfw.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".gen", dir=out.parent))
    try:
        sub = generator_config(cfg, n_ids, tmp / name)
        log(f"Syn-LFW: generator {name} makes 2 images of each of {n_ids} identities in {tmp}")
        src = open_source(fn(sub, log))
        ids = np.unique(src.labels)
        by_id = {int(k): np.flatnonzero(src.labels == k) for k in ids}
        if len(ids) < n_ids or any(len(by_id[int(ids[k])]) < 2 for k in np.unique(plan[:, 0])):
            raise FaceFoundryError(
                f"generator {name} wrote {len(src)} images of {len(ids)} identities; Syn-LFW "
                f"needs 2 images of each of {n_ids} identities"
            )
        picks = []
        for a, b in plan:
            ia, ib = by_id[int(ids[a])], by_id[int(ids[b])]
            picks += [ia[0], ia[1]] if a == b else [ia[0], ib[0]]
        loaded = [src.load(int(i)) for i in picks]  # the generator's own side (evaluate resizes when needed)
        shapes = sorted({im.shape for im in loaded})
        if len(shapes) != 1:
            raise FaceFoundryError(f"generator {name} wrote images of different sizes {shapes}")
        images = np.stack(loaded)
        record: dict = {"image_labels": plan.reshape(-1).tolist(), "mixed_images": 0}
        if src.mix_labels is not None:
            partner = src.mix_labels[picks]
            assert src.mix_weights is not None  # sources set mix_weights with mix_labels
            record.update(
                mixed_images=int((partner >= 0).sum()), partners=partner.tolist(), phi=src.mix_weights[picks].tolist()
            )
        return images, record
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
