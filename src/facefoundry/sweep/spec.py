"""Sweep specs: a search space over ``params.yaml`` keys, an objective, a trial budget, resources per trial.

A spec is a YAML file (``experiments/sweep_*.yaml``)::

    name: sweep_smoke                  # default: the file's stem; output folder outputs/sweeps/<name>
    params: params.yaml                # the recipe every trial starts from (``--params`` overrides)
    experiments: []                    # experiment files deep-merged on top (as ``-e``)
    base:                              # overrides for every trial: sections, or dotted keys (as ``--set``)
      train.epochs: 4
    space:                             # one dimension per params.yaml key
      train.lr: {type: loguniform, low: 0.02, high: 0.3}
      generate.images_per_identity: {type: choice, values: [6, 10]}   # or just [6, 10]
    objective: {metric: accuracy, benchmarks: [twins], mode: max}    # or metric: data/<name>
    validation: {benchmark: twins, pairs: 300}   # the per-epoch accuracy ASHA stops on (no flip)
    budget: {trials: 8, max_concurrent: 2}
    asha: {grace_period: 1, reduction_factor: 2} # max_t: the most epochs any trial trains
    resources: {cpu: 1, gpu: auto}               # per trial; auto: 1 GPU when the cluster has any; gpu: N > 1 (or
                                                 # workers: N): N Ray Train workers train it (sweep/workers.py)
    failure: {max_failures: 1}                   # retries per trial before it is reported as failed
    seed: 0                                      # Optuna's TPE sampler (and Ray's grid sampler)
    realism: false                               # true: each dataset goes through the realism stage
    address: null                                # a Ray cluster (else RAY_ADDRESS, else this machine)
    repeats: {top_k: 2, seeds: [1, 2]}           # after the search: the 2 best again with FR seeds 1 and 2
                                                 # (or seeds: N, derived); the winner: the best mean

Dimension types: ``uniform`` / ``loguniform`` (low < high), ``int`` (alias ``randint``; low ≤ x ≤ high),
``choice`` and ``grid`` (``values``). Optuna's TPE samples every non-grid space. Optuna cannot take an
exhaustive grid: a spec with a ``grid`` dimension runs every grid point (× budget.trials / grid size)
with Ray's basic variant generator instead (other dimensions then sampled at random, seeded).

The objective is the mean 10-fold accuracy over ``objective.benchmarks`` (synthetic ones: ``twins`` by
default), or a data metric of ``facefoundry validate`` (``data/images``, ``data/judge_dlib_d_prime``, …).
ASHA stops trials on a per-epoch accuracy on ``validation.benchmark`` (the synthetic twins). A real
verification benchmark (``../shared/data/real_verification``) may be in ``evaluate.benchmarks``: every
trial reports it, but it never drives ASHA or the objective unless ``objective.allow_real: true``;
it is evaluation-only.

Everything is checked before Ray starts: unknown keys (of the spec or of params.yaml), empty ranges,
values of the wrong type or out of bounds each give a one-line error.
"""

from __future__ import annotations

import difflib
import json
import typing
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ValidationError

from facefoundry.config import Config, format_validation_error
from facefoundry.config.dotted import apply_sets, deep_merge, parse_set
from facefoundry.config.load import _read_yaml
from facefoundry.errors import FaceFoundryError
from facefoundry.sweep.spec_model import COST_METRICS, Objective, Sweep, SweepSpec

# set by the sweep for each trial (its own folders, the shared dataset, the sweep's benchmark and store)
PER_TRIAL_KEYS = (
    "generate.out",
    "train.dataset",
    "train.out",
    "train.metrics",
    "evaluate.model",
    "evaluate.out",
    "evaluate.benchmarks",
    "benchmark",
    "realism.source",
    "realism.out",
    "realism.model_out",
    "realism.target_dir",
    "base.tracking_uri",
    "base.experiment",
    "fuse.out",
)


def _expand_dotted(d: dict) -> dict:
    """``{"train.lr": 0.1, "generate": {...}}`` → nested sections (dotted keys as ``--set`` reads them)."""
    out: dict = {}
    for key, value in d.items():
        node = _expand_dotted(value) if isinstance(value, dict) else value
        for part in reversed(str(key).split(".")):
            node = {part: node}
        out = deep_merge(out, node)
    return out


def _unwrap(ann: Any) -> Any:
    """A field's annotation → a pydantic model class, ``dict`` (any sub-key), or None (a leaf)."""
    origin = typing.get_origin(ann)
    if origin is Annotated:
        return _unwrap(typing.get_args(ann)[0])
    if origin is dict:
        return dict
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        found = [_unwrap(a) for a in typing.get_args(ann)]
        return next((f for f in found if f is not None and f is not dict), None) or (dict if dict in found else None)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    if ann is dict:
        return dict
    return None


def config_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the config schema (for suggestions)."""
    keys = []
    for name, field in model.model_fields.items():
        sub = _unwrap(field.annotation)
        if sub is not None and sub is not dict:
            keys += config_keys(sub, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def key_exists(key: str) -> bool:
    """Whether ``key`` is a setting: a field of the schema, a key inside a free mapping, or a key of a plug-in
    generator's settings (``generate.<plug-in>.<key>``: the plug-in reads and checks its own settings)."""
    from facefoundry.config import plugin_generators

    parts = key.split(".")
    if len(parts) >= 3 and parts[0] == "generate" and parts[1] in plugin_generators():
        return True
    cls: Any = Config
    for part in parts:
        if cls is dict:
            return True
        if cls is None or part not in cls.model_fields:
            return False
        cls = _unwrap(cls.model_fields[part].annotation)
    return True


def _unknown(key: str) -> str:
    near = difflib.get_close_matches(key, config_keys(), n=1, cutoff=0.6)
    return "unknown key (not a params.yaml setting" + (f"; did you mean {near[0]}?)" if near else ")")


def is_real_benchmark(name: str, path: str) -> bool:
    """The shared real verification benchmark (evaluation-only): by its folder, or a name like ``real``."""
    parts = Path(path).parts
    return "real_verification" in parts or name.lower().split("_")[0] == "real"


def data_metric_names(cfg: Config) -> set[str]:
    """The ``data/<name>`` metrics ``facefoundry validate`` reports for this config."""
    names = {
        "images",
        "identities",
        "images_per_identity_min",
        "images_per_identity_mean",
        "images_per_identity_max",
        "duplicate_images",
        "non_rgb_images",
    }
    # identity.judges, and the quality judge validate adds beside them (any of judge_order when it is auto)
    q = cfg.quality
    for spec in dict.fromkeys([*cfg.identity.judges, *(q.judge_order if q.judge == "auto" else [q.judge])]):
        judge = Path(spec).stem if "/" in spec or "." in spec else spec
        names |= {
            f"judge_{judge}_{k}"
            for k in ("intra_mean", "intra_std", "inter_mean", "inter_std", "d_prime", "intra_above_inter_p99")
        }
    return names


def _validate_raw(raw: dict, where: str) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise FaceFoundryError(format_validation_error(where, err)) from None


def _max_epochs(sweep: Sweep) -> int:
    d = sweep.dims.get("train.epochs")
    if d is None:
        return sweep.base_config.train.epochs
    return int(max(d.extremes()))


def load_spec(
    path: str | Path,
    params: str | None = None,
    experiments: list[str] | None = None,
    sets: list[str] | None = None,
    out: str | None = None,
) -> Sweep:
    """Read and check a sweep spec; every problem is one :class:`FaceFoundryError` line, before Ray starts.

    ``params`` / ``experiments`` / ``sets`` are the CLI's global ``--params`` / ``-e`` / ``--set``: the
    first replaces the spec's ``params``, the others are applied on top of the spec's ``base``.
    """
    path = Path(path)
    data = _read_yaml(path)
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as err:
        raise FaceFoundryError(format_validation_error(str(path), err)) from None
    name = spec.name or path.stem
    where = str(path)

    # the recipe every trial starts from
    pfile = Path(params or spec.params)
    if pfile.is_file():
        raw = _read_yaml(pfile)
    elif params is None and spec.params == "params.yaml":
        raw = {}
    else:
        raise FaceFoundryError(f"{where}: params {pfile}: config file does not exist")
    for exp in [*spec.experiments, *(experiments or [])]:
        raw = deep_merge(raw, _read_yaml(Path(exp)))
    for key in _leaf_keys(_expand_dotted(spec.base)):
        if not key_exists(key):
            raise FaceFoundryError(f"{where}: base.{key}: {_unknown(key)}")
    raw = deep_merge(raw, _expand_dotted(spec.base))
    raw = apply_sets(raw, [s for s in sets or [] if s.strip()])
    cfg = _validate_raw(raw, f"{where} (base recipe: {pfile}{' + base' if spec.base else ''})")

    # the search space: keys exist, every value validates
    for key, dim in spec.space.items():
        if not key_exists(key):
            raise FaceFoundryError(f"{where}: space.{key}: {_unknown(key)}")
        if key in PER_TRIAL_KEYS or any(key.startswith(k + ".") for k in PER_TRIAL_KEYS):
            why = (
                "the benchmarks are made or chosen once per sweep (the same yardstick for every trial); "
                "set them in base"
                if key.startswith(("benchmark", "evaluate.benchmarks"))
                else "its own folders and store; sweep the settings, not the paths"
            )
            raise FaceFoundryError(f"{where}: space.{key}: set per trial by the sweep ({why})")
        if key.startswith("realism.") and not spec.realism:
            raise FaceFoundryError(
                f"{where}: space.{key}: trials only run the realism stage with realism: true "
                "in the spec (else this setting would change nothing)"
            )
        for value in dim.candidates():
            try:
                Config.model_validate(deep_merge(raw, parse_set(f"{key}={json.dumps(value)}")))
            except ValidationError as err:  # noqa: PERF203 - the first bad value ends the loop with one line
                msg = format_validation_error("", err).removeprefix(": ")
                raise FaceFoundryError(
                    f"{where}: space.{key}: value {value!r} ({dim.type}) is invalid: {msg}"
                ) from None
    if spec.inject_failure:
        for key in spec.inject_failure.match:
            if not key_exists(key):
                raise FaceFoundryError(f"{where}: inject_failure.match.{key}: {_unknown(key)}")

    sweep = Sweep(
        spec=spec, path=str(path), name=name, base_raw=raw, out=Path(out or spec.out or f"outputs/sweeps/{name}")
    )
    _check_objective(sweep, cfg, where)

    # budget, grid and ASHA
    b = spec.budget
    if sweep.has_grid:
        if b.trials is not None and b.trials % sweep.grid_size:
            raise FaceFoundryError(
                f"{where}: budget.trials: {b.trials} is not a multiple of the grid's "
                f"{sweep.grid_size} points (each run of the grid is {sweep.grid_size} trials)"
            )
    elif b.trials is None:
        raise FaceFoundryError(f"{where}: budget.trials: required (how many trials to sample)")
    a = spec.asha
    if a.enabled:
        max_t = a.max_t or _max_epochs(sweep)
        if a.grace_period >= max_t:
            raise FaceFoundryError(
                f"{where}: asha.grace_period: {a.grace_period} is not below max_t {max_t} "
                "(epochs): ASHA could never stop a trial; lower it or set asha.enabled: false"
            )
    _check_repeats(sweep, where)
    return sweep


def _check_repeats(sweep: Sweep, where: str) -> None:
    """``repeats``: top_k within the budget; extra FR seeds non-empty, distinct, not the base seed."""
    r = sweep.spec.repeats
    if r is None:
        return
    if r.top_k > sweep.trials:
        raise FaceFoundryError(
            f"{where}: repeats.top_k: {r.top_k} is more than the sweep's {sweep.trials} trials (budget.trials)"
        )
    if sweep.spec.objective.metric != "accuracy":
        raise FaceFoundryError(
            f"{where}: repeats: objective {sweep.spec.objective.metric} is a data metric, which the FR seed "
            "does not change; repeats need objective.metric: accuracy"
        )
    if "base.seed" in sweep.dims:
        raise FaceFoundryError(f"{where}: repeats: space.base.seed: the repeats set the FR seed themselves")
    seeds, base = sweep.repeat_seeds(), sweep.base_seed
    if not seeds:
        raise FaceFoundryError(f"{where}: repeats.seeds: empty; give extra FR seeds, e.g. [1, 2], or a count")
    if len(set(seeds)) != len(seeds):
        dup = sorted({x for x in seeds if seeds.count(x) > 1})
        raise FaceFoundryError(f"{where}: repeats.seeds: {seeds}: seed(s) {dup} given twice; give distinct seeds")
    if base in seeds:
        raise FaceFoundryError(
            f"{where}: repeats.seeds: {base} is the base seed (base.seed) every trial already ran with; "
            "give other seeds"
        )


def _leaf_keys(d: dict, prefix: str = "") -> list[str]:
    """Leaf keys of a nested ``base`` as dotted keys (a dict-valued setting is one leaf)."""
    keys = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and _is_section(key):
            keys += _leaf_keys(v, key + ".")
        else:
            keys.append(key)
    return keys


def _is_section(key: str) -> bool:
    cls: Any = Config
    for part in key.split("."):
        if cls is None or cls is dict or part not in cls.model_fields:
            return False
        cls = _unwrap(cls.model_fields[part].annotation)
    return cls is not None and cls is not dict


def _check_objective(sweep: Sweep, cfg: Config, where: str) -> None:
    v = sweep.spec.validation
    benches = cfg.evaluate.benchmarks
    several = len(sweep.spec.all_objectives) > 1
    for i, o in enumerate(sweep.spec.all_objectives):
        _check_one_objective(o, cfg, f"{where}: objective[{i}]" if several else f"{where}: objective")
    if v.benchmark not in benches:
        raise FaceFoundryError(
            f"{where}: validation.benchmark: {v.benchmark!r} is not in evaluate.benchmarks "
            f"({', '.join(benches) or 'none configured'})"
        )
    if is_real_benchmark(v.benchmark, benches[v.benchmark]) and not sweep.spec.objective.allow_real:
        raise FaceFoundryError(
            f"{where}: validation.benchmark: {v.benchmark!r} ({benches[v.benchmark]}) is the real "
            "verification benchmark: evaluation-only, it must not drive ASHA"
        )
    if v.pairs and v.pairs < cfg.evaluate.nfolds:
        raise FaceFoundryError(
            f"{where}: validation.pairs: {v.pairs} pairs cannot be split into "
            f"{cfg.evaluate.nfolds} folds (evaluate.nfolds)"
        )


def _check_one_objective(o: Objective, cfg: Config, where: str) -> None:
    benches = cfg.evaluate.benchmarks
    if o.metric in COST_METRICS:
        return
    if o.metric == "accuracy":
        if not o.benchmarks:
            raise FaceFoundryError(
                f"{where}.benchmarks: empty; name at least one of "
                f"evaluate.benchmarks ({', '.join(benches) or 'none configured'})"
            )
        for name in o.benchmarks:
            if name not in benches:
                raise FaceFoundryError(
                    f"{where}.benchmarks: {name!r} is not in evaluate.benchmarks "
                    f"({', '.join(benches) or 'none configured'})"
                )
            if is_real_benchmark(name, benches[name]) and not o.allow_real:
                raise FaceFoundryError(
                    f"{where}.benchmarks: {name!r} ({benches[name]}) is the real "
                    "verification benchmark: evaluation-only, every trial reports it but it "
                    "must not drive the sweep (objective.allow_real: true overrides)"
                )
    else:
        name = o.metric.removeprefix("data/")
        known = data_metric_names(cfg)
        if name not in known and not name.startswith("converted_from_"):
            near = difflib.get_close_matches(name, sorted(known), n=1)
            raise FaceFoundryError(
                f"{where}.metric: {o.metric!r} is not a data metric of validate"
                + (f" (did you mean data/{near[0]}?)" if near else f" (one of data/{', data/'.join(sorted(known))})")
            )


def describe(sweep: Sweep) -> str:
    """One line per dimension, for logs and the MLflow parent run."""
    lines = []
    for key, d in sweep.dims.items():
        rng = f"{d.values}" if d.values is not None else f"[{d.low}, {d.high}]"
        lines.append(f"{key}: {d.type} {rng}")
    return "\n".join(lines)


def dump_yaml(sweep: Sweep) -> str:
    return yaml.safe_dump(sweep.spec.model_dump(mode="json"), sort_keys=False)
