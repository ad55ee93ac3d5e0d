"""The ``pipeline`` command's DVC invocation: ``dvc repro``, or ``dvc exp run -S …`` for overrides.

DVC reads only params.yaml, so experiment files (``-e experiments/promoted.yaml``) and ``--set``
become ``-S`` overrides: exactly the keys where they differ from params.yaml, without the output
layout, MLflow place and machine settings a promoted run recorded (promote's own rule,
:func:`facefoundry.config.dvc.dvc_overrides`); ``--set`` and command-line overrides as typed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from facefoundry.config import load_config, parse_set
from facefoundry.config.dvc import dvc_overrides
from facefoundry.errors import FaceFoundryError


def _key(expr: str) -> str:
    return expr.split("=", 1)[0].lstrip("+")


def dvc_command(
    params_file: Path,
    experiments: list[str],
    global_sets: list[str],
    overrides: list[str],
    stage: str | None = None,
    name: str | None = None,
    required: bool = True,
) -> list[str]:
    """The ``dvc`` arguments (after ``python -m dvc``) that run the pipeline with these settings.

    ``overrides`` are validated first (a malformed or unknown one is a one-line error before DVC starts);
    ``required=False`` lets a missing ``params_file`` mean the built-in defaults, as every stage reads them.
    """
    for expr in overrides:
        parse_set(expr)
    load_config(params_file, experiments, [*global_sets, *overrides], required=required)
    sets = overrides
    if experiments or global_sets:
        if not params_file.is_file():
            raise FaceFoundryError(f"{params_file}: not found; `dvc repro` reads params.yaml")
        raw = yaml.safe_load(params_file.read_text()) or {}
        base = load_config(params_file).model_dump(mode="json")
        files = load_config(params_file, experiments).model_dump(mode="json")
        derived = dvc_overrides(files, raw, base)
        explicit = [*global_sets, *overrides]
        keys = {_key(e) for e in explicit}
        sets = [e for e in derived if _key(e) not in keys] + explicit
        if not sets:
            print(f"the experiment files and --set change nothing in {params_file}", file=sys.stderr)
    cmd = ["exp" if sets else "repro"]
    if sets:
        cmd += ["run", *[a for expr in sets for a in ("-S", expr)], *(["-n", name] if name else [])]
    return cmd + ([stage] if stage else [])
