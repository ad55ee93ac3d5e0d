"""What every trial of a sweep shares, made once before the first starts: the benchmarks it is scored on (the
synthetic twins benchmark from the base recipe, clear of every trial's identities) and the realism stage's target
photos."""

from __future__ import annotations

from pathlib import Path

from facefoundry.config import Config
from facefoundry.config.dotted import apply_sets
from facefoundry.errors import FaceFoundryError
from facefoundry.stages.common import log
from facefoundry.sweep.spec_model import Sweep, trial_sets


def prepare_benchmarks(sweep: Sweep, cfg: Config, out: Path) -> dict[str, str]:
    """Absolute benchmark paths for every trial. The synthetic twins benchmark (the ``benchmark`` stage's
    output) is made once here from the base recipe, so every trial is scored on the same pairs; its
    identities stay clear of every trial's (``generate.identities`` at the space's largest value)."""
    from facefoundry.sweep.keys import _digest

    benches: dict[str, str] = {}
    for name, path in cfg.evaluate.benchmarks.items():
        if Path(path) == Path(cfg.benchmark.out):
            sets = {}
            ids = sweep.dims.get("generate.identities")
            if ids is not None:
                sets["generate.identities"] = int(max(ids.extremes()))
            bcfg = Config.model_validate(apply_sets(cfg.model_dump(mode="json"), trial_sets(sets))) if sets else cfg
            b = bcfg.model_dump(mode="json")
            key = _digest(
                {
                    "benchmark": {k: v for k, v in b["benchmark"].items() if k != "out"},
                    "seed": bcfg.base.seed,
                    "size": bcfg.base.image_size,
                    "generate": {k: b["generate"][k] for k in ("identities", "min_identity_distance", "render")},
                }
            )
            target = out / "benchmarks" / f"{name}-{key}.bin"
            if not target.is_file():
                from facefoundry.stages.generate import run_benchmark

                log(f"making the {name} benchmark once for the sweep: {target}")
                run_benchmark(Config.model_validate(apply_sets(b, trial_sets({"benchmark.out": str(target)}))))
            benches[name] = str(target.resolve())
        else:
            if not Path(path).is_file():
                raise FaceFoundryError(f"evaluate.benchmarks.{name}: {path}: benchmark file does not exist")
            benches[name] = str(Path(path).resolve())
    return benches


def prepare_realism_target(sweep: Sweep, cfg: Config, out: Path) -> str | None:
    """The realism stage's target photos: the configured folder, or the default synthetic photographic
    target made once for the sweep."""
    if not sweep.spec.realism or cfg.realism.method == "none":
        return None
    target = Path(cfg.realism.target_dir)
    if target.is_dir() and any(target.iterdir()):
        return str(target.resolve())
    if cfg.realism.target_dir != "outputs/realism_target":
        raise FaceFoundryError(f"realism.target_dir: {target}: no target photos there")
    made = out / "realism_target"
    if not (made / "manifest.parquet").is_file() and not (made.is_dir() and any(made.iterdir())):
        from facefoundry.stages.realism import run_realism_target

        log(f"making the synthetic photographic realism target once for the sweep: {made}")
        run_realism_target(cfg, str(made))
    return str(made.resolve())
