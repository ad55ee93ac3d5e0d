"""What the rest of the platform may know about a generator, declared once, in the generator's own package.

Every generator package has a ``descriptor.py`` with one :class:`GeneratorDescriptor`; the table
(:mod:`facefoundry.generators.table`) maps names to them, lazily, so nothing imports a generator to
learn its name. Stages, the sweep's dataset keys, the quality gate and the dataset card read the
descriptor and never name a generator:

- ``generate`` / ``train``: entry points as ``"module:function"`` strings (imported when called);
- ``settings``: its sub-section of ``generate`` (``generate.<name>``), which defines its datasets;
- ``train_section`` / ``model_setting`` / ``model_index``: a learned generator's training settings, the
  ``generate`` setting naming its model folder, and the index file in that folder which records what it
  learned from (``dataset``, ``dataset_dvc_md5``, ``encoder_name``): the provenance of its datasets;
- ``learns_from_photos``: its training data may be real photos, so the leakage gates apply to it
  (``promote.gate.max_tau``); ``leakage_filter``: it records a τ filter (``data.<name>.tau``);
- ``identity_encoder``: it generates in an identity encoder's space, so ``identity.*`` defines its data.

A third-party generator is a package with such a descriptor, announced under the ``facefoundry.generators``
entry point of its distribution (see :mod:`facefoundry.generators.table`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from facefoundry.errors import FaceFoundryError


def load_object(path: str) -> Any:
    """``"package.module:name"`` → the object (one clear line when it cannot be imported)."""
    module, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise FaceFoundryError(f"cannot load {path!r}: {exc.__class__.__name__}: {exc}") from None
    return obj


@dataclass(frozen=True)
class GeneratorDescriptor:
    name: str
    description: str  # one sentence for dataset cards
    generate: str | None = None  # "module:function", called (cfg, log) -> dataset folder; None: made by `made_by`
    made_by: str = "generate"  # the command that makes its datasets (`facefoundry <made_by>`)
    settings: str | None = None  # its generation settings: a sub-section of `generate` (generate.<name>)
    settings_model: str | None = None  # "module:Class" (pydantic) validating generate.<name> of a plug-in
    train: str | None = None  # "module:function", called (cfg, stop_after) -> dict: trains its model
    train_section: str | None = None  # the section of its training settings (its `out` holds `model/`)
    model_setting: str | None = None  # the setting naming the model folder it generates from
    model_index: str | None = None  # the index file of that folder (records dataset, its DVC hash, encoder)
    train_when_missing: bool = False  # `generate` trains the model first when its default folder lacks one
    learns_from_photos: bool = False  # its training data may be real photos: the leakage gates apply
    leakage_filter: bool = False  # records data.<name>.tau / avoid_training (identities kept ≤ τ from its photos)
    identity_encoder: bool = False  # generates in an identity encoder's space: identity.* defines its data
    # "module:function" (params, recipe) -> {"trained_on", "notes"}, beside the generic provenance
    provenance: str | None = None
    describe: str | None = None  # "module:function" (cfg) -> short parts of its training run's name ("w64 d2")
    reconstructions: str | None = None  # "module:function" (model_dir, source, seed=) -> rows of images after training

    @property
    def learned(self) -> bool:
        return self.train is not None

    def entry(self, which: str) -> Callable[..., Any]:
        """The ``generate`` or ``train`` entry point, imported now."""
        path = getattr(self, which)
        if path is None:
            raise FaceFoundryError(
                f"generator {self.name!r} has no {which} entry point: its datasets are made by "
                f"`facefoundry {self.made_by}`"
            )
        return load_object(path)
