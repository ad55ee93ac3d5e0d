"""Judge ≠ teacher: which identity encoder produces a dataset's data-quality figures.

A dataset's **teachers** are the identity encoders that conditioned or trained its generator. A generator whose
descriptor says ``identity_encoder`` (Vec2Face, IDSync) records its encoder's spec in the dataset's manifest
metadata (``encoder``: ``{name, weights, …}``); a fused dataset has the union of its sources' teachers (``fuse``
records them as ``teachers``; else each source's manifest is read); a converted dataset has its source's. Renders,
realism translations, aligned photos and folders without a manifest have none. A generator the table does not
know (a plug-in that is not installed) counts the encoder it records, if any.

``quality.judge: auto`` (the default) is the first encoder of ``quality.judge_order`` (dlib, sface) that is not a
teacher: renders are judged by dlib, a dlib-trained Vec2Face or IDSync by SFace, an SFace-trained one by dlib.
A judge named explicitly is used even when it is a teacher, with a warning line, and the report records it
(``judge_is_teacher``). An auto judge with every candidate a teacher is an error.

An encoder is matched by its registered name (``dlib``, ``sface``, ``pixels``: the family, whatever its weights
file) or, for the generic loaders (``.onnx``, ``.pth``, model folders), by the file or folder name of its weights.

Thresholds in a judge's cosine space (``quality.leakage.threshold``, ``quality.separability_threshold``,
``fuse.overlap_threshold``) take one float for any judge or one value per judge (:func:`judge_threshold`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facefoundry.errors import FaceFoundryError

AUTO = "auto"
# encoder spec names that say which loader read the weights, not which network they are
GENERIC = frozenset({"onnx", "iresnet", "facefoundry", "arcface_torch", "encoder"})

MetaReader = Callable[[str], Mapping[str, Any] | None]


def _no_meta(path: str) -> Mapping[str, Any] | None:
    return None


def encoder_label(spec: Mapping[str, Any] | str | None) -> str | None:
    """The name a recorded encoder spec is matched by: its family name (``dlib``, ``sface``), or, for a generic
    loader, its weights' file name; a bare string is taken as the name it was loaded by."""
    if spec is None:
        return None
    if isinstance(spec, str):
        return Path(spec).name if ("/" in spec or "." in spec) else spec
    name, weights = spec.get("name"), spec.get("weights")
    if name and name not in GENERIC:
        return str(name)
    return Path(str(weights)).name if weights else (str(name) if name else None)


def is_teacher(candidate: str, teachers: Iterable[str]) -> bool:
    """Whether encoder ``candidate`` (a registered name or a path) is one of ``teachers`` (labels)."""
    found = set(teachers)
    return candidate in found or encoder_label(candidate) in found


def same_encoder(a: str, b: str) -> bool:
    """Whether two encoder settings (registered names or paths) name the same encoder."""
    return a == b or encoder_label(a) == encoder_label(b)


def teachers(
    meta: Mapping[str, Any] | None,
    read: MetaReader = _no_meta,
    index: MetaReader = _no_meta,
    _seen: frozenset[str] = frozenset(),
) -> list[str]:
    """The teachers (encoder labels, sorted) of a dataset with manifest metadata ``meta`` (None: no manifest).

    Pure: ``read(path)`` gives another dataset's metadata (a fused or converted dataset's sources), ``index(path)``
    a model folder's index (``*_model.json``: ``encoder``, ``encoder_name``), read when a manifest names its model
    but not its encoder; each None when there is none or it cannot be read."""
    if not meta:
        return []
    gen = meta.get("generator")
    if gen == "fusion":
        if isinstance(meta.get("teachers"), list):  # recorded by fuse when it judged the sources
            return sorted({str(t) for t in meta["teachers"]})
        out: set[str] = set()
        for src in ((meta.get("fusion") or {}).get("sources") or {}).values():
            path = str((src or {}).get("path", ""))
            if path and path not in _seen:
                out.update(teachers(read(path), read, index, _seen | {path}))
        return sorted(out)
    if gen == "convert":
        path = str(meta.get("source") or "")
        return teachers(read(path), read, index, _seen | {path}) if path and path not in _seen else []
    if not isinstance(gen, str) or gen == "align":
        return []
    from facefoundry.generators.table import descriptor

    try:
        conditioned = descriptor(gen).identity_encoder
    except FaceFoundryError:  # a generator this installation does not know: what it records counts
        conditioned = True
    if not conditioned:
        return []
    spec = meta.get("encoder")
    if not spec and isinstance(meta.get("model"), str):  # a manifest that names its model only
        found = index(meta["model"]) or {}
        spec = found.get("encoder") or found.get("encoder_name")
    label = encoder_label(spec)
    return [label] if label else []


@dataclass(frozen=True)
class Judge:
    """The encoder that judges one dataset, and why."""

    name: str  # what load_encoder takes: a registered name or a path
    teachers: tuple[str, ...] = ()
    auto: bool = True  # chosen by quality.judge: auto (else named by the setting)
    is_teacher: bool = False  # named explicitly although it conditioned or trained the generator

    @property
    def label(self) -> str:
        """The judge's name in metric names and logs (``judge_<label>_*``)."""
        return encoder_label(self.name) or self.name

    def describe(self) -> str:
        how = "auto" if self.auto else "quality.judge"
        taught = f"; teachers {', '.join(self.teachers)}" if self.teachers else "; no identity-encoder teachers"
        return f"judge {self.label} ({how}{taught})"


def choose_judge(setting: str, order: Sequence[str], taught_by: Iterable[str]) -> Judge:
    """``quality.judge`` resolved for a dataset taught by ``taught_by``: the setting itself unless it is ``auto``,
    else the first of ``order`` that is not a teacher (none: one error line)."""
    found = tuple(sorted(set(taught_by)))
    if setting != AUTO:
        return Judge(setting, found, auto=False, is_teacher=is_teacher(setting, found))
    for candidate in order:
        if not is_teacher(candidate, found):
            return Judge(candidate, found, auto=True)
    raise FaceFoundryError(
        f"quality.judge auto: every encoder of quality.judge_order ({', '.join(order)}) conditioned or trained "
        f"this dataset's generator (teachers: {', '.join(found)}); add an independent encoder to "
        "quality.judge_order, or name a judge in quality.judge"
    )


def study_judges(listed: Sequence[str], setting: str, order: Sequence[str], teacher: Any) -> list[str]:
    """The judges of a generator's own σ / τ study: the dataset's judge (``quality.judge`` resolved against the
    generator's encoder ``teacher``, a recorded spec or name) first, then ``identity.judges`` — the teacher only
    ever beside an independent one, never alone."""
    label = encoder_label(teacher)
    judge = choose_judge(setting, order, [label] if label else [])
    return list(dict.fromkeys([judge.name, *listed]))


def judge_threshold(value: float | Mapping[str, float], judge: str | Judge, setting: str) -> float:
    """A threshold setting for ``judge``: a float applies to any judge; a mapping gives the judge's entry (by the
    name it was set by, or its label)."""
    if not isinstance(value, Mapping):
        return float(value)
    name = judge.name if isinstance(judge, Judge) else judge
    for key in dict.fromkeys([name, encoder_label(name)]):
        if key is not None and key in value:
            return float(value[key])
    raise FaceFoundryError(
        f"{setting}: no value for judge {name!r} (it has {', '.join(sorted(value)) or 'none'}); add "
        f"{setting}.{encoder_label(name)} or give one number for every judge"
    )


def threshold_text(value: float | Mapping[str, float]) -> str:
    """A threshold setting as a short text: ``0.65`` or ``dlib 0.65 / sface 0.39``."""
    if isinstance(value, Mapping):
        return " / ".join(f"{k} {float(v):g}" for k, v in value.items())
    return f"{float(value):g}"


def read_meta(path: str | Path) -> Mapping[str, Any] | None:
    """A dataset folder's manifest metadata; None when it has no manifest or it cannot be read."""
    from facefoundry.data.manifest import MANIFEST, read_manifest_meta

    folder = Path(path)
    if not (folder / MANIFEST).is_file():
        return None
    try:
        return read_manifest_meta(folder)
    except FaceFoundryError:
        return None


def read_index(model: str | Path) -> Mapping[str, Any] | None:
    """A generator model folder's index (its ``*_model.json``); None when there is none or it cannot be read."""
    import json

    for path in sorted(Path(model).glob("*_model.json")) if Path(model).is_dir() else []:
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(found, dict):
            return found
    return None


def dataset_teachers(dataset: str | Path | Mapping[str, Any] | None) -> list[str]:
    """:func:`teachers` of a dataset folder (its manifest, its sources' and its model's index read from disk) or
    of its metadata."""
    meta = dataset if isinstance(dataset, Mapping) or dataset is None else read_meta(dataset)
    return teachers(meta, read_meta, read_index)


def resolve_judge(
    setting: str,
    order: Sequence[str],
    dataset: str | Path | Mapping[str, Any] | None,
    log: Callable[[str], None] | None = print,
) -> Judge:
    """The judge of a dataset (a folder, or its manifest metadata): :func:`choose_judge` on its teachers; an
    explicit judge that is a teacher is logged as a warning line."""
    judge = choose_judge(setting, order, dataset_teachers(dataset))
    if judge.is_teacher and log is not None:
        log(
            f"warning: quality.judge {setting} conditioned or trained this dataset's generator (teachers: "
            f"{', '.join(judge.teachers)}): its quality figures are the teacher's own view (quality.judge: auto "
            "picks an independent one)"
        )
    return judge
