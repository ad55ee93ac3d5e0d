"""Settings marks: what kind each field of the schema is (``RUNTIME``, ``OUTPUT``, ``INPUT``, ``WIRED``, declared
once as ``Annotated[type, ..., MARK]``) and the helpers that read them off a section: which of its fields carry
a mark, which never change what it learns or makes, and the settings a fingerprint or cache key hashes."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel


class _Mark:
    """A field's kind, declared once in the schema (``Annotated[type, ..., RUNTIME]``) and read by every
    fingerprint, run key, sweep key, leaderboard grouping and ``dvc exp run -S`` derivation. A field without a
    mark changes what is learned or made (tests/test_config_marks.py keeps every field decided)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


RUNTIME = _Mark("RUNTIME")  # how or where it runs (device, threads, workers, logging, tracking, registry names)
OUTPUT = _Mark("OUTPUT")  # a path it writes (outputs, metrics files, caches)
INPUT = _Mark("INPUT")  # a path it reads: its content, where it matters, is hashed by whoever reads it
WIRED = _Mark("WIRED")  # an input the DVC pipeline sets to another stage's output, per recipe (dvc.yaml's --set)


def marked(model: type[BaseModel], *marks: _Mark) -> frozenset[str]:
    """The fields of a section class carrying any of ``marks``."""
    return frozenset(n for n, f in model.model_fields.items() if any(m in marks for m in f.metadata))


def runtime_only(model: type[BaseModel]) -> frozenset[str]:
    """The fields of a section that never change what it learns or makes: RUNTIME, OUTPUT and INPUT ones."""
    return marked(model, RUNTIME, OUTPUT, INPUT)


def result_settings(section: BaseModel) -> dict[str, Any]:
    """A section's settings that define what it learns or makes (JSON form; nested sections likewise, a plug-in's
    extra settings kept): what fingerprints and cache keys hash. Input paths are left out: whoever reads one
    hashes its content."""
    skip = runtime_only(type(section))
    dump = section.model_dump(mode="json")
    out: dict[str, Any] = {}
    for name, value in dump.items():
        if name in skip:
            continue
        nested = getattr(section, name, None)
        out[name] = result_settings(nested) if isinstance(nested, BaseModel) else value
    return out


def section_model(annotation: Any) -> type[BaseModel] | None:
    """The section class inside a field's annotation (``Annotated[X, ...]``, ``X | None``), if any."""
    from typing import get_args, get_origin

    if get_origin(annotation) is Annotated:
        return section_model(get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = section_model(arg)
        if found is not None:
            return found
    return None
