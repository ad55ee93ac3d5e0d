"""The recipe file: a training run's logged params turned back into a partial ``params.yaml``.

Stage runs log their config sections flat (``section.key`` → string); this module decodes them against the
schema's defaults, nests them into the winning recipe, makes its paths relative to the checkout, derives the
``dvc exp run -S`` overrides that turn ``params.yaml`` into it, and writes it as YAML in ``params.yaml``'s
own shape. Pure functions: no MLflow store is needed to test them.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import yaml

from facefoundry.config import Config, flatten

SECTIONS = [s for s in Config.model_fields if s != "datasets"]  # what a run can have logged, in file order
_MISSING = object()
_DEFAULTS = Config().model_dump(mode="json")


def _default_at(parts: list[str]) -> Any:
    node: Any = _DEFAULTS
    for p in parts:
        if not isinstance(node, dict) or p not in node:
            return _MISSING
        node = node[p]
    return node


def decode_param(raw: str, default: Any = _MISSING) -> Any:
    """An MLflow param string back to its value: ``None`` → None, ``True`` → True, JSON (numbers,
    lists, dicts) decoded, and strings kept as they are where the schema's default is a string."""
    if raw == "None":
        return None
    if isinstance(default, str):
        return raw
    if raw in ("True", "False"):
        return raw == "True"
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def nest_params(flat: dict[str, str]) -> dict[str, Any]:
    """Flat ``section.key`` params (as ``stage_run`` logs them) → nested, typed config sections.
    Keys outside the config's sections (``data.*`` recipe params) are left out."""
    out: dict[str, Any] = {}
    for key in sorted(flat):
        parts = key.split(".")
        if parts[0] not in SECTIONS or len(parts) < 2:
            continue
        node = out
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):  # a scalar already sits there: keep the first reading
                break
            node = nxt
        else:
            node[parts[-1]] = decode_param(flat[key], _default_at(parts))
    return out


def generate_from_data(params: dict[str, str]) -> dict[str, Any]:
    """The ``generate`` section rebuilt from a training run's ``data.*`` params (the dataset
    manifest's record of its generator), when no generate run of that dataset is found."""
    gen = params.get("data.generator")
    if gen not in _DEFAULTS["generate"] or not isinstance(_DEFAULTS["generate"].get(gen), dict):
        return {}
    section: dict[str, Any] = {"generator": gen}
    try:
        n, images = int(params["data.num_classes"]), int(params["data.num_images"])
        section.update(identities=n, images_per_identity=images // n)
    except (KeyError, ValueError, ZeroDivisionError):
        pass
    if params.get("train.dataset"):
        section["out"] = params["train.dataset"]
    flat = {f"generate.{k[len('data.') :]}": v for k, v in params.items() if k.startswith(f"data.{gen}.")}
    sub = nest_params(flat).get("generate", {})
    return {**section, **sub}


def build_recipe(
    sections: dict[str, dict[str, str]], params: dict[str, str], base_params: dict | None = None
) -> dict[str, Any]:
    """The winning recipe as a partial params file: one nested section per section a stage run logged.

    ``sections``: section → the flat params the stage run that owns it logged (``base`` and
    ``train`` from the training run itself); ``params``: the training run's params (``data.*``
    rebuild ``generate`` when no generate run was found). ``base_params`` (the raw params.yaml):
    benchmarks it names that the run did not evaluate become ``null``, so a deep merge drops them.
    """
    flat: dict[str, str] = {}
    for section, values in sections.items():
        flat.update({k: v for k, v in values.items() if k.split(".")[0] == section})
    nested = nest_params(flat)
    if "generate" not in nested:
        gen = generate_from_data(params)
        if gen:
            nested["generate"] = gen
    if "evaluate" in nested and base_params:
        ours = nested["evaluate"].setdefault("benchmarks", {})
        for name in (base_params.get("evaluate") or {}).get("benchmarks") or {}:
            ours.setdefault(name, None)
    return {s: nested[s] for s in SECTIONS if s in nested}


def relative_paths(node: Any, root: Path) -> Any:
    """Absolute paths inside ``root`` (the checkout) made relative to it, so the recipe file works in
    any clone: a sweep trial logs its folders absolute. Other paths and URIs are left as they are."""
    root = root.resolve()

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, str) and v.startswith("/"):
            with contextlib.suppress(ValueError):
                return Path(v).relative_to(root).as_posix()
        return v

    return walk(node)


def logged_form(cfg: Config, section: str) -> dict[str, str]:
    """A config section flattened and stringified exactly as ``stage_run`` logs it to MLflow."""
    dump = cfg.model_dump(mode="json")[section]
    flat = flatten({section: dump})
    return {k: str(json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in flat.items()}


def data_params_from_generate(gen: dict[str, Any]) -> dict[str, str]:
    """``data.*`` params as the manifest would have recorded them, from a ``generate`` section."""
    name: Any = gen.get("generator")  # any YAML value (None when unset); str(name) below
    sub = gen.get(name) if isinstance(gen.get(name), dict) else {}
    flat = flatten({name: sub}, "data.") if sub else {}
    out = {k: str(json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in flat.items()}
    return {"data.generator": str(name), **out}


class _Dumper(yaml.SafeDumper):
    """Sections and settings in block style, lists (and ranges) in flow style, as params.yaml has them."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def _ranges_as_pairs(node: Any) -> Any:
    if isinstance(node, dict):
        if set(node) == {"min", "max"}:
            return [node["min"], node["max"]]
        return {k: _ranges_as_pairs(v) for k, v in node.items()}
    return node


def recipe_yaml(recipe: dict[str, Any], header: str) -> str:
    body = yaml.dump(
        _ranges_as_pairs(recipe), Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    return header + "\n" + body


def _deep_merge(base: dict, over: dict) -> dict:
    from facefoundry.config import deep_merge

    return deep_merge(base, over)
