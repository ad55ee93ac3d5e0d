"""A trial's configuration: the sweep's base recipe + the trial's params (exactly as ``--set``), then its own paths
and the keys of the datasets it shares with other trials (:func:`trial_config`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facefoundry.config import Config
from facefoundry.config.dotted import apply_sets
from facefoundry.errors import FaceFoundryError
from facefoundry.sweep.keys import dataset_key, fuse_key, realism_key, train_key
from facefoundry.sweep.spec_model import Sweep, SweepSpec, trial_sets


def sweep_from_ctx(ctx: dict) -> Sweep:
    s = ctx["sweep"]
    return Sweep(
        spec=SweepSpec.model_validate(s["spec"]),
        path=s["path"],
        name=s["name"],
        base_raw=s["base_raw"],
        out=Path(s["out"]),
    )


def trial_config(sweep: Sweep, params: dict[str, Any], folder: Path, ctx: dict) -> tuple[Config, dict[str, str]]:
    """The trial's Config: the base recipe + the trial's params (exactly as ``--set``), then its paths.

    Returns the config and its dataset keys (``generate``, and ``realism`` when the sweep translates).
    Paths: the shared dataset ``<sweep>/datasets/<key>`` (the translated one ``<sweep>/datasets/<realism
    key>``), training and evaluation under ``folder``, the sweep's benchmarks and MLflow store.
    """
    from pydantic import ValidationError

    from facefoundry.config import format_validation_error

    raw = apply_sets(sweep.base_raw, trial_sets(params))
    where = f"{sweep.path} trial {folder.name}"
    datasets = Path(ctx["out"]) / "datasets"
    paths: dict[str, Any] = {
        "base.tracking_uri": ctx["tracking_uri"],
        "base.experiment": ctx["experiment"],
        "train.threads": ctx["threads"],
    }
    if not ctx.get("gpu") and raw.get("base", {}).get("device", "auto") == "auto":
        paths["base.device"] = "cpu"
    if ctx.get("realism_target"):
        paths["realism.target_dir"] = ctx["realism_target"]
    try:
        first = Config.model_validate(apply_sets(raw, trial_sets(paths)))
    except ValidationError as err:
        raise FaceFoundryError(format_validation_error(where, err)) from None
    learned = searched_generator(first, sweep)
    if learned is not None:  # the sweep searches a generator's training settings: each variant is a trained model
        from facefoundry.generators.table import descriptor
        from facefoundry.stages.generator import training_section

        desc, section = descriptor(learned), training_section(first, learned)
        keys = {"train_generator": train_key(first, learned)}
        model = datasets / f"{keys['train_generator']}.{learned}"
        assert desc.model_setting is not None  # searched_generator names only generators with one
        paths.update({f"{desc.train_section}.out": str(model), desc.model_setting: str(model / "model")})
        if "cache" in type(section).model_fields:  # what variants on the same data share (IDSync's VAE)
            paths[f"{desc.train_section}.cache"] = str(datasets / f"{learned}_cache")
        if "threads" in type(section).model_fields:
            paths[f"{desc.train_section}.threads"] = ctx["threads"]
        first = Config.model_validate(apply_sets(raw, trial_sets(paths)))
        keys["generate"] = dataset_key(first)
    elif any(k.startswith("fuse.") for k in sweep.spec.space):  # the trial's dataset is a fusion of datasets
        keys = {"fuse": fuse_key(first)}
        keys["generate"] = keys["fuse"]
        paths["fuse.out"] = str(datasets / keys["fuse"])
    else:
        keys = {"generate": dataset_key(first)}
    data = datasets / keys["generate"]
    if sweep.spec.realism:
        keys["realism"] = realism_key(first, keys["generate"])
        paths.update(
            {
                "realism.source": str(data),
                "realism.out": str(datasets / keys["realism"]),
                "realism.model_out": str(datasets / f"{keys['realism']}.model"),
            }
        )
    final = datasets / keys.get("realism", keys["generate"])
    paths.update(
        {
            "generate.out": str(data),
            "train.dataset": str(final),
            "train.out": str(folder / "train"),
            "train.metrics": str(folder / "train" / "metrics.json"),
            "evaluate.model": str(folder / "train" / "model"),
            "evaluate.out": str(folder / "eval"),
            "train.recipe": raw.get("train", {}).get("recipe") or f"{sweep.name}-{folder.name}",
        }
    )
    if not ctx.get("register_models"):
        paths["train.registered_model"] = None
    for name, path in ctx["benchmarks"].items():
        paths[f"evaluate.benchmarks.{name}"] = path
    # a leakage reference that is one of the recipe's benchmarks means the sweep's copy of that benchmark
    bench_of = {str(p): name for name, p in first.evaluate.benchmarks.items()}
    refs = [ctx["benchmarks"].get(bench_of.get(str(r), ""), r) for r in first.quality.leakage.references]
    if refs != list(first.quality.leakage.references):
        paths["quality.leakage.references"] = refs
    try:
        cfg = Config.model_validate(apply_sets(raw, trial_sets(paths)))
    except ValidationError as err:
        raise FaceFoundryError(format_validation_error(where, err)) from None
    cfg._sources = f"{sweep.path} · trial {folder.name}"
    return cfg, keys


def searched_generator(cfg: Config, sweep: Sweep) -> str | None:
    """The recipe's generator when it learns and the sweep's space searches its training section, else None."""
    from facefoundry.generators.table import descriptor

    desc = descriptor(cfg.generate.generator)
    if desc.learned and desc.model_setting and any(k.startswith(f"{desc.train_section}.") for k in sweep.spec.space):
        return desc.name
    return None
