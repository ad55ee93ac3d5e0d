"""The generator table: name → where its descriptor lives. Explicit, lazy, and open to plug-ins.

Built-in generators are the rows of :data:`BUILTIN`; an installed distribution adds its own under the
``facefoundry.generators`` entry point group (the Python packaging convention for plug-ins), e.g. in
its ``pyproject.toml``::

    [project.entry-points."facefoundry.generators"]
    toy = "facefoundry_toy.descriptor:DESCRIPTOR"

Nothing registers itself and no generator module is imported to list the names: a descriptor (and
through it the generator's code) is imported when a name is looked up.
"""

from __future__ import annotations

from functools import cache, lru_cache
from importlib.metadata import entry_points

from facefoundry.config import PLUGIN_GROUP as GROUP
from facefoundry.errors import FaceFoundryError
from facefoundry.generators.descriptor import GeneratorDescriptor, load_object

BUILTIN = {
    "render": "facefoundry.generators.render.descriptor:DESCRIPTOR",
    "vec2face": "facefoundry.generators.vec2face.descriptor:DESCRIPTOR",
    "idsync": "facefoundry.generators.idsync.descriptor:DESCRIPTOR",
    "realism": "facefoundry.generators.realism.descriptor:DESCRIPTOR",
}


@lru_cache(maxsize=1)
def _rows() -> dict[str, str]:
    rows = dict(BUILTIN)
    for ep in entry_points(group=GROUP):
        if ep.name in rows and rows[ep.name] != ep.value:
            raise FaceFoundryError(
                f"generator {ep.name!r} is defined twice: {rows[ep.name]} and, by the "
                f"{GROUP} entry point of {getattr(ep.dist, 'name', 'a distribution')}, {ep.value}"
            )
        rows[ep.name] = ep.value
    return rows


def names() -> list[str]:
    """Every generator name: the built-in ones and those installed distributions announce."""
    return sorted(_rows())


def plugin_names() -> list[str]:
    return sorted(set(_rows()) - set(BUILTIN))


@cache
def descriptor(name: str) -> GeneratorDescriptor:
    """The descriptor of generator ``name`` (one line listing the names when there is none)."""
    rows = _rows()
    if name not in rows:
        raise FaceFoundryError(f"unknown generator {name!r}; choose one of: {', '.join(sorted(rows))}")
    found = load_object(rows[name])
    if not isinstance(found, GeneratorDescriptor) or found.name != name:
        raise FaceFoundryError(f"{rows[name]}: not the GeneratorDescriptor of generator {name!r}")
    return found


def generating() -> list[str]:
    """The generators ``facefoundry generate`` runs (the others' datasets come from their own stage)."""
    return [n for n in names() if descriptor(n).generate is not None]
