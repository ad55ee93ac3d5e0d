"""The sweep's dataset cache: each dataset (trained generator, generated, fused, translated, validated) is
made once per key under ``<sweep>/datasets``, under a file lock, and every other trial with that key
waits for it and reuses it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from facefoundry.config import Config
from facefoundry.io import atomic_write_json, file_lock, read_json
from facefoundry.sweep.keys import validation_key


def shared_dataset(cfg: Config, keys: dict[str, str], trial_id: str, log) -> tuple[dict, dict, dict]:
    """Generate (once per key), translate (with realism, once per key) and validate (once per key and
    validate settings) the trial's dataset; trials with the same keys wait for and reuse it.

    Returns (dataset info, data metrics, timings). ``info["cost_seconds"]`` is what the dataset cost to make
    (generator training, generation or fusion, realism: each step's seconds as its maker recorded them), also when
    this trial reused it. ``<datasets>/generations.jsonl`` gets one line per dataset actually made.
    """
    from facefoundry.stages.generate import run_generate
    from facefoundry.stages.validate import run_validate

    times = {"dataset_wait_seconds": 0.0, "generate_seconds": 0.0, "realism_seconds": 0.0, "validate_seconds": 0.0}
    cost = 0.0
    if "train_generator" in keys:  # the sweep searches a generator's training: train once per key, then generate
        from facefoundry.generators.descriptor import load_object
        from facefoundry.generators.table import descriptor
        from facefoundry.stages.generator import run_train_generator, training_section

        name = cfg.generate.generator
        desc, section = descriptor(name), training_section(cfg, name)
        parts = list(load_object(desc.describe)(cfg)) if desc.describe else []
        made = _make_once(
            Path(section.out),
            keys["train_generator"],
            name,
            trial_id,
            times,
            lambda: run_train_generator(cfg, name),
            log,
            f"{name} {' '.join(parts)}".strip(),
            {"generator": name, "settings": parts},
        )
        cost += float(made.get("seconds", 0.0))
    gen = cfg.generate
    if "fuse" in keys:  # the sweep searches fusion settings: fuse once per key, from the recipe's sources
        from facefoundry.quality.judging import threshold_text
        from facefoundry.stages.fuse import run_fuse

        f = cfg.fuse
        info = _make_once(
            Path(f.out),
            keys["fuse"],
            "fuse",
            trial_id,
            times,
            lambda: run_fuse(cfg),
            log,
            f"fusion of {', '.join(f.sources)} ({f.strategy}, overlap {f.overlap} ≥ "
            f"{threshold_text(f.overlap_threshold)})",
            {"sources": list(f.sources), "seed": cfg.base.seed},
        )
    else:
        info = _make_once(
            Path(cfg.generate.out),
            keys["generate"],
            "generate",
            trial_id,
            times,
            lambda: run_generate(cfg),
            log,
            f"{gen.generator}, {gen.shape}",
            {"generator": gen.generator, "seed": cfg.base.seed, "image_size": cfg.base.image_size},
        )
    cost += float(info.get("seconds", 0.0))
    if "realism" in keys:
        from facefoundry.stages.realism import run_realism

        info = _make_once(
            Path(cfg.realism.out),
            keys["realism"],
            "realism",
            trial_id,
            times,
            lambda: run_realism(cfg),
            log,
            f"realism {cfg.realism.method} of {keys['generate']}",
            {"source": keys["generate"], "method": cfg.realism.method},
        )
        cost += float(info.get("seconds", 0.0))
    info = {**info, "cost_seconds": cost}
    folder = Path(cfg.train.dataset)
    vmarker = folder.parent / f"{folder.name}.validate-{validation_key(cfg, folder.name)}.json"
    t0 = time.perf_counter()
    with file_lock(folder.parent / f"{folder.name}.lock"):
        times["dataset_wait_seconds"] += time.perf_counter() - t0
        metrics = read_json(vmarker)
        if not metrics:
            t0 = time.perf_counter()
            metrics = run_validate(cfg, str(folder), str(vmarker))
            times["validate_seconds"] = time.perf_counter() - t0
    return info, metrics, times


def _make_once(
    folder: Path, key: str, kind: str, trial_id: str, times: dict, make, log, what: str, extra: dict
) -> dict:
    from facefoundry.data.hashing import dvc_dir_hash

    root = folder.parent
    marker = root / f"{key}.json"
    t0 = time.perf_counter()
    with file_lock(root / f"{key}.lock"):
        times["dataset_wait_seconds"] += time.perf_counter() - t0
        info = read_json(marker)
        if info:
            log(f"trial {trial_id}: dataset {key} shared (made by trial {info.get('generated_by')})")
            return info
        log(f"trial {trial_id}: making dataset {key} ({what})")
        t0 = time.perf_counter()
        make()
        secs = time.perf_counter() - t0
        info = {
            "key": key,
            "kind": kind,
            "path": str(folder),
            "dvc_md5": dvc_dir_hash(folder),
            "generated_by": trial_id,
            "seconds": secs,
            **extra,
        }
        atomic_write_json(marker, info)
        with open(root / "generations.jsonl", "a") as fh:
            fh.write(json.dumps({"key": key, "kind": kind, "trial": trial_id, "seconds": round(secs, 3)}) + "\n")
        times[f"{kind}_seconds"] = secs
        return info
