"""The loader: ``params.yaml``, then each experiment file deep-merged over it, then each ``--set``, validated
against the schema into one ``Config``; a missing file, invalid YAML or a bad setting is one
:class:`~facefoundry.errors.FaceFoundryError` line naming the file (or files) and the key."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from facefoundry.config.dotted import apply_sets, deep_merge
from facefoundry.config.schema import Config
from facefoundry.errors import FaceFoundryError


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FaceFoundryError(f"{path}: config file does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line, always
        raise FaceFoundryError(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise FaceFoundryError(f"{path}: top level must be a mapping of sections")
    return data


def format_validation_error(source: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"] if not str(x).startswith("function-"))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        got = e.get("input")
        if e["type"] not in ("extra_forbidden", "missing") and not isinstance(got, (dict, list)):
            msg += f" (got {got!r})"
        parts.append(f"{loc}: {msg}")
    return f"{source}: " + "; ".join(parts)


def load_config(
    params: str | Path = "params.yaml",
    experiments: Sequence[str | Path] | None = None,
    sets: list[str] | None = None,
    required: bool = True,
) -> Config:
    """Load ``params`` then deep-merge each experiment file and each ``--set`` in order.

    A named file that does not exist is an error; only with ``required=False`` (no file was asked
    for) does a missing ``params`` fall back to the built-in defaults. ``config_sources(cfg)``
    says what was read.
    """
    params = Path(params)
    if params.exists() or required:
        raw = _read_yaml(params)
        sources = [str(params)]
    else:
        raw, sources = {}, ["built-in defaults"]
    for exp in experiments or []:
        raw = deep_merge(raw, _read_yaml(Path(exp)))
        sources.append(str(exp))
    # MLproject passes an empty --set when no override is given
    raw = apply_sets(raw, [expr for expr in sets or [] if expr.strip()])
    if sets:
        sources.append("--set")
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as err:
        raise FaceFoundryError(format_validation_error(" + ".join(sources), err)) from None
    cfg._sources = " + ".join(sources)
    return cfg


def config_sources(cfg: Config) -> str:
    """What ``cfg`` was read from, e.g. ``params.yaml + experiments/x.yaml + --set``."""
    return cfg._sources
