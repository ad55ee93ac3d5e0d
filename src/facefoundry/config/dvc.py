"""A configuration as ``dvc exp run -S`` overrides: the keys where a recipe differs from params.yaml.

DVC reads only params.yaml, so an experiment file, a promoted recipe or ``--set`` reach a DVC
pipeline as overrides in DVC's (Hydra's) grammar. Settings marked RUNTIME, OUTPUT or WIRED in the
schema are never passed (:mod:`facefoundry.config.marks`). Used by the ``pipeline`` command and by
promote's reproduce lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facefoundry.config.dotted import dotted_marked, flatten
from facefoundry.config.marks import OUTPUT, RUNTIME, WIRED

_MISSING = object()
# Never DVC overrides: set per recipe by dvc.yaml's foreach (--set ...); the pipeline's own output layout
# (params.yaml's paths: a sweep trial's run logged its sweep folders there); where runs are logged and
# registered; machine-specific settings (a sweep trial runs on 1 CPU thread, on the CPU when Ray has no GPU).
DVC_SKIP = tuple(dotted_marked(RUNTIME, OUTPUT, WIRED))  # the schema's marks


def _hydra(value: Any) -> str:
    """A value in DVC's (Hydra's) override grammar: JSON scalars and lists parse there."""
    return json.dumps(value)


def _same_path(a: Any, b: Any) -> bool:
    """``real.bin`` and ``/checkout/real.bin`` name one file (the recipe file keeps paths relative)."""
    if not (isinstance(a, str) and isinstance(b, str)) or "://" in a + b or "/" not in a + b:
        return False
    return Path(a).resolve() == Path(b).resolve()


def dvc_overrides(recipe: dict[str, Any], params_raw: dict[str, Any], params_typed: dict[str, Any]) -> list[str]:
    """``dvc exp run -S`` overrides that turn ``params.yaml`` into the recipe.

    Compared in the schema's typed form (``params_typed``: params.yaml loaded and dumped), written
    in params.yaml's own shape (``params_raw``): a range kept as ``[min, max]`` there is set as a
    list, a key params.yaml lacks is added with ``+`` (DVC's override syntax). ``DVC_SKIP`` keys are
    never passed."""
    want, have = flatten(recipe), flatten(params_typed)
    raw = flatten(params_raw)
    out: list[str] = []
    own_benchmark = want.get("benchmark.out")
    for key, value in want.items():
        if key in DVC_SKIP or (key.startswith("evaluate.benchmarks.") and value is None):
            continue
        if key.startswith("evaluate.benchmarks.") and own_benchmark and value == own_benchmark:
            continue  # the benchmark stage's output: params.yaml's benchmark.out is where DVC makes it
        if (
            have.get(key, _MISSING) == value
            or (isinstance(value, list) and have.get(key) == list(value))
            or _same_path(have.get(key), value)
        ):
            continue
        parts = key.split(".")
        prefix = next((".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1) if ".".join(parts[:i]) in raw), None)
        if key in raw or any(k.startswith(key + ".") for k in raw):  # a value, or one over params.yaml's mapping
            expr = f"{key}={_hydra(value)}"
        elif prefix is not None and isinstance(raw[prefix], list):  # a range written as [min, max]
            node = recipe
            for p in prefix.split("."):
                node = node[p]
            expr = f"{prefix}={_hydra([node['min'], node['max']] if isinstance(node, dict) else node)}"
        else:
            expr = f"+{key}={_hydra(value)}"
        if expr not in out:
            out.append(expr)
    return out
