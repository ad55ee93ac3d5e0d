"""diffusers-style persistence: a module's constructor arguments are its saved config.

``save_pretrained(dir)`` writes ``config.json`` (class + kwargs) and the state dict;
``from_pretrained(dir)`` rebuilds the exact module without any code edit or guess.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facefoundry.errors import FaceFoundryError
from facefoundry.io import atomic_write_bytes, atomic_write_json, load_json_file

_CLASSES: dict[str, type[ConfigModule]] = {}


def register_to_config(init):
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
    def from_pretrained(cls, folder: str | Path, map_location: str | torch.device = "cpu") -> ConfigModule:
        folder = Path(folder)
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise FaceFoundryError(f"{cfg_path}: missing (not a saved FaceFoundry component)")
        cfg = load_json_file(cfg_path, "component config")
        name = cfg.pop("_class_name", None)
        klass = _CLASSES.get(name) if isinstance(name, str) else None
        if klass is None or not issubclass(klass, cls):
            raise FaceFoundryError(f"{cfg_path}: class {name!r} is not a {cls.__name__}")
        try:
            module = klass(**cfg)
        except (TypeError, ValueError, FaceFoundryError) as exc:
            raise FaceFoundryError(f"{cfg_path}: cannot build {name} from it ({exc})") from None
        load_weights(module, folder / klass.weights_name, map_location)
        return module


def load_state_file(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A state dict from ``path``, loaded as weights only (never arbitrary pickled objects)."""
    import pickle
    import warnings
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FaceFoundryError(f"{path}: missing (model weights)")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols name the unsafe switch: not for users
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # torch's own text suggests an unsafe reload: never pass it on
        raise FaceFoundryError(
            f"{path}: holds objects other than tensors; FaceFoundry loads weights only and refuses it"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise FaceFoundryError(
            f"{path}: not a readable PyTorch weights file, truncated or corrupt ({exc.__class__.__name__})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FaceFoundryError(f"{path}: not a state dict (name → tensor)")
    return state


def load_weights(module: nn.Module, path: str | Path, map_location: str | torch.device = "cpu") -> None:
    """Load ``path`` into ``module``; a mismatch names a few missing, unexpected or mis-shaped tensors."""
    state = load_state_file(path, map_location)
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [
        f"{k} {tuple(state[k].shape)}≠{tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shaped:
        parts = [
            f"{label} {len(keys)} ({', '.join(keys[:3])}{', …' if len(keys) > 3 else ''})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shaped))
            if keys
        ]
        raise FaceFoundryError(f"{path}: weights do not fit {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(state)
