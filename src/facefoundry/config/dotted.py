"""Dotted keys (``train.lr``): the raw mapping a config is read from, deep-merged and overridden by ``--set
train.lr=0.05`` expressions, flattened to the ``{"train.lr": 0.05}`` shape MLflow params and DVC ``-S`` use,
and every leaf setting of the schema as a dotted key with the names of its marks."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel

from facefoundry.config.marks import _Mark, section_model
from facefoundry.config.schema import Config
from facefoundry.errors import FaceFoundryError


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (override wins, dicts merge)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_set(expr: str) -> dict[str, Any]:
    """Turn ``train.lr=0.05`` into ``{"train": {"lr": 0.05}}`` (value parsed as YAML)."""
    if "=" not in expr:
        raise FaceFoundryError(f"--set {expr!r}: expected KEY=VALUE, e.g. train.lr=0.05")
    key, raw = expr.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise FaceFoundryError(f"--set {expr!r}: empty key")
    value: Any = yaml.safe_load(raw) if raw.strip() else ""
    for part in reversed(parts):
        value = {part: value}
    nested: dict[str, Any] = value  # parts is not empty: a dict
    return nested


def apply_sets(raw: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """Deep-merge ``--set`` expressions into a raw config dict, in order (``load_config`` and the sweep)."""
    for expr in sets:
        raw = deep_merge(raw, parse_set(expr))
    return raw


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``: the shape MLflow params and DVC ``-S`` use."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def dotted_fields(model: type[BaseModel] | None = None, prefix: str = "") -> dict[str, frozenset[str]]:
    """Every leaf setting of the schema as ``{"train.threads": {"RUNTIME"}, ...}`` (its marks' names)."""
    out: dict[str, frozenset[str]] = {}
    for name, field in (model or Config).model_fields.items():
        sub = section_model(field.annotation)
        if sub is not None:
            out.update(dotted_fields(sub, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = frozenset(m.name for m in field.metadata if isinstance(m, _Mark))
    return out


def dotted_marked(*marks: _Mark) -> list[str]:
    """Every leaf setting (``train.threads``) that carries any of ``marks``."""
    names = {m.name for m in marks}
    return [k for k, v in dotted_fields().items() if v & names]
