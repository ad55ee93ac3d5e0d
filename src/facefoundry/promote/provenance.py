"""Provenance: what a promoted dataset's generator learned from, and the real photos behind it.

The run's ``data.*`` record, the generator's descriptor and the model and dataset files it names (where they
are here) say which folder the generator trained on, which known photo collections (with their licences)
that folder holds, and which identity encoder it used; a fused dataset joins its sources'. Best effort:
names alone when the files are absent, and "not recorded" rather than a guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facefoundry.errors import FaceFoundryError
from facefoundry.promote.recipe import _MISSING, _default_at

# Real photo collections the project knows, by folder name: (what, licence). A folder of folders
# (``real_faces_unlabelled``) stands for its parts.
REAL_SOURCES = {
    "ffhq256": (
        "FFHQ (Flickr-Faces-HQ, NVIDIA): 1,100 photos resized to 256 px",
        "CC BY-NC-SA 4.0 (NVIDIA); each photo also under its own Flickr licence",
    ),
    "celeba_align_89x109": (
        "CelebA img_align_celeba 000001–003000: 1,949 photos at 89×109",
        "CelebA terms: non-commercial research and education only",
    ),
}
REAL_CONTAINERS = {"real_faces_unlabelled": ("ffhq256", "celeba_align_89x109")}
SYNTHETIC_FOLDERS = ("realism_target",)  # `facefoundry realism-target`: rendered, no photo
FUSION = "fusion"  # a fused dataset names no generator of its own: its card and gate read its sources'
FUSION_DESCRIPTION = (
    "dataset fusion: identities drawn from several generators' datasets, after a cross-source identity-overlap check"
)


def describe_generator(name: str) -> str:
    """The dataset card's one-sentence description of a generator (from its descriptor)."""
    from facefoundry.generators.table import descriptor

    if name == FUSION:
        return FUSION_DESCRIPTION
    try:
        return descriptor(name).description
    except FaceFoundryError:
        return "see the recipe file"


@dataclass
class Source:
    name: str
    what: str
    licence: str


def known_sources(path: str | None) -> list[Source]:
    """Real photo collections a folder path names (by folder name; none for a synthetic one)."""
    if not path:
        return []
    parts = Path(str(path)).parts
    found: list[str] = []
    for p in parts:
        if p in REAL_SOURCES:
            found.append(p)
        elif p in REAL_CONTAINERS:
            found.extend(REAL_CONTAINERS[p])
    if found:
        return [Source(n, *REAL_SOURCES[n]) for n in dict.fromkeys(found)]
    if any(p in SYNTHETIC_FOLDERS for p in parts):
        return []
    return [Source(str(path), "photos of unrecorded origin", "unknown: check the source's terms before release")]


@dataclass
class Provenance:
    """What the dataset's generator learned from (``facefoundry.promote.provenance`` fills it)."""

    generator: str
    model: str | None = None  # the generator's model folder (vec2face)
    trained_on: str | None = None  # the folder the generator (or translator) trained on
    trained_on_digest: str | None = None
    photos_from: str | None = None  # where those aligned photos came from (align's source_dir)
    encoder: str | None = None
    sources: list[Source] = field(default_factory=list)
    synthetic_inputs: bool = False  # the generator trained on generated images only
    notes: list[str] = field(default_factory=list)


def _manifest_meta(folder: str | Path) -> dict | None:
    path = Path(folder) / "manifest.parquet"
    if not path.is_file():
        return None
    try:
        import pyarrow.parquet as pq

        return json.loads((pq.read_schema(path).metadata or {}).get(b"facefoundry", b"{}"))
    except Exception:  # a damaged manifest: fall back to names
        return None


def _at(tree: dict[str, Any], dotted: str | None) -> Any:
    node: Any = tree
    for part in (dotted or "").split(".") if dotted else []:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def provenance(params: dict[str, str], recipe: dict[str, Any]) -> Provenance:
    """What the dataset's generator learned from: the run's record, then the model and dataset files it names
    where they exist here (best effort: names alone when they do not). The generator's descriptor says where
    to look: its model folder setting and index (``dataset``, ``dataset_dvc_md5``, ``encoder_name``), its
    training section, and any provenance function of its own; a fused dataset joins its sources'."""
    from facefoundry.generators.descriptor import load_object
    from facefoundry.generators.table import descriptor, names
    from facefoundry.io import read_json

    gen = params.get("data.generator", "unknown")
    prov = Provenance(gen)
    if gen == FUSION:
        return _fused_provenance(params)
    try:
        desc = descriptor(gen)
    except FaceFoundryError:
        return prov  # an unknown generator: "Not recorded"
    if not desc.learned and not desc.learns_from_photos:
        prov.synthetic_inputs = True  # it learns nothing (render)
        return prov
    if desc.model_setting:
        model = params.get(f"data.{gen}.model") or _at(recipe, desc.model_setting)
        prov.model = model
        index = read_json(Path(model) / desc.model_index) if model and desc.model_index else {}
        trained = recipe.get(desc.train_section or "") or {}
        prov.trained_on = index.get("dataset") or trained.get("dataset")
        prov.trained_on_digest = index.get("dataset_dvc_md5")
        prov.encoder = (
            index.get("encoder_name")
            or trained.get("encoder")
            or (_default_at([desc.train_section, "encoder"]) if desc.train_section else None)
        )
        if prov.encoder is _MISSING:
            prov.encoder = None
    if desc.provenance:
        extra = load_object(desc.provenance)(params, recipe)
        prov.trained_on = extra.get("trained_on", prov.trained_on)
        prov.notes += extra.get("notes", [])
    if prov.trained_on:
        meta = _manifest_meta(prov.trained_on)
        if meta is not None and meta.get("generator") == "align":
            prov.photos_from = meta.get("source_dir")
            prov.sources = known_sources(prov.photos_from)
        elif meta is not None and meta.get("generator") in (*names(), FUSION):
            prov.synthetic_inputs = True  # a generator trained on another generator's images
        else:
            prov.sources = known_sources(prov.trained_on)
            prov.synthetic_inputs = not prov.sources
    return prov


def _fused_provenance(params: dict[str, str]) -> Provenance:
    """A fused dataset: each source dataset's provenance (read from its manifest, where it is here), joined."""
    from facefoundry.tracking import recipe_params

    prov = Provenance(FUSION)
    paths = {
        k.split(".")[3]: v
        for k, v in sorted(params.items())
        if k.startswith("data.fusion.sources.") and k.endswith(".path") and k.count(".") == 4
    }
    parts: list[Provenance] = []
    for name, path in paths.items():
        meta = _manifest_meta(path)
        if meta is None:
            prov.notes.append(f"Source `{name}` (`{path}`): not found here, so its provenance is not recorded.")
            parts = []
            break
        part = provenance({k: str(v) for k, v in recipe_params(meta).items()}, {})
        parts.append(part)
        learned = f"learned from `{part.trained_on}`" if part.trained_on else "learned from no photo"
        prov.notes.append(
            f"Source `{name}` (`{path}`): {part.generator}, {learned}"
            + (f" (encoder {part.encoder})" if part.encoder else "")
            + "."
        )
    if parts:
        prov.sources = list({s.name: s for p in parts for s in p.sources}.values())
        prov.synthetic_inputs = not prov.sources and all(p.synthetic_inputs for p in parts)
        prov.encoder = next((p.encoder for p in parts if p.encoder), None)
        if not prov.synthetic_inputs and not prov.sources:
            prov.notes.append("Not every source's training data could be traced.")
    return prov


def with_data_params(params: dict[str, str], dataset: str | None) -> dict[str, str]:
    """A run trained before datasets' recipes were logged (no ``data.*``): read them from the dataset's
    manifest, when the folder is here."""
    if "data.generator" in params or not dataset:
        return params
    meta = _manifest_meta(dataset)
    if not meta:
        return params
    from facefoundry.tracking import recipe_params

    return {**params, **{k: str(v) for k, v in recipe_params(meta).items()}}
