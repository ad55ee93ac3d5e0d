"""diffusers-style persistence: a module's constructor arguments are its saved config.

``save_pretrained(dir)`` writes ``config.json`` (class + kwargs) and the state dict;
``from_pretrained(dir)`` rebuilds the exact module without any code edit or guess.
"""

from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facefoundry.errors import FaceFoundryError
from facefoundry.io import atomic_write_bytes, atomic_write_json

_CLASSES: dict[str, type["ConfigModule"]] = {}


def register_to_config(init):  # noqa: ANN001, ANN201
    """Record the bound constructor arguments of ``init`` as ``self.config``."""

    @functools.wraps(init)
    def wrapper(self, *args: Any, **kwargs: Any) -> None:
        bound = inspect.signature(init).bind(self, *args, **kwargs)
        bound.apply_defaults()
        cfg = {k: v for k, v in bound.arguments.items() if k != "self"}
        init(self, *args, **kwargs)
        self.config = cfg

    return wrapper


class ConfigModule(nn.Module):
    weights_name = "model.pth"
    config: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _CLASSES[cls.__name__] = cls

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        atomic_write_json(folder / "config.json", {"_class_name": type(self).__name__, **self.config})
        import io

        buf = io.BytesIO()
        torch.save(self.state_dict(), buf)
        atomic_write_bytes(folder / self.weights_name, buf.getvalue())

    @classmethod
    def from_pretrained(cls, folder: str | Path, map_location: str | torch.device = "cpu") -> "ConfigModule":
        folder = Path(folder)
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise FaceFoundryError(f"{cfg_path}: missing (not a saved FaceFoundry component)")
        cfg = json.loads(cfg_path.read_text())
        name = cfg.pop("_class_name")
        klass = _CLASSES.get(name)
        if klass is None or not issubclass(klass, cls):
            raise FaceFoundryError(f"{cfg_path}: class {name!r} is not a {cls.__name__}")
        module = klass(**cfg)
        state = torch.load(folder / klass.weights_name, map_location=map_location, weights_only=True)
        module.load_state_dict(state)
        return module
