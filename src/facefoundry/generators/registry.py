"""Generator registry: ``facefoundry generate --generator NAME`` looks names up here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from facefoundry.config import Config
from facefoundry.registry import Registry

GeneratorFn = Callable[[Config, Callable[[str], None]], Path]
GENERATORS: Registry[Path] = Registry("generator")


def load_builtin() -> None:
    """Import the modules that register built-in generators."""
    import facefoundry.generators.idsync.generate
    import facefoundry.generators.render.generate
    import facefoundry.generators.vec2face.generate  # noqa: F401
