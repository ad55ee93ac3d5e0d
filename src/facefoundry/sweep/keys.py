"""Keys that name folders of a sweep: content hashes of what a dataset (or trained generator, translated
or fused dataset, validation) is made from, so trials with equal keys share one folder; and each
trial's own ``<number>_<trial id>`` key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from facefoundry.config import Config, result_settings


def _digest(obj: Any, n: int = 12) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def dataset_key(cfg: Config) -> str:
    """Hash of everything the generator reads: trials with equal keys share one dataset.

    The ``generate`` section (without its output folder, and of the generators' own sub-sections only the
    chosen one's), ``base.seed`` and ``base.image_size``; for a generator that works in an identity space or
    learns (its descriptor says), also the device and the identity settings, and its model: the content hash
    of the model folder, or, when the sweep trains it, the key of what it is trained from.
    """
    from facefoundry.generators.table import descriptor, names

    g = result_settings(cfg.generate)  # without its output folder or model path (the schema's marks say)
    desc = descriptor(g["generator"])
    for other in names():
        sub = descriptor(other).settings
        if other != desc.name and sub and sub.startswith("generate."):
            g.pop(sub.split(".", 1)[1], None)
    blob: dict[str, Any] = {"generate": g, "seed": cfg.base.seed, "image_size": cfg.base.image_size}
    if desc.identity_encoder or desc.learned:
        blob.update(device=cfg.base.device, identity=cfg.identity.model_dump(mode="json"))
    if desc.model_setting:
        from facefoundry.stages.generator import model_folder, training_section

        model = model_folder(cfg, desc)
        if desc.learned and model == Path(training_section(cfg, desc).out) / "model":
            blob["model_key"] = train_key(cfg, desc.name)  # trained from these settings (by the sweep, first)
        elif model.exists():
            from facefoundry.data.hashing import dvc_dir_hash

            blob["model"] = dvc_dir_hash(model)
    return _digest(blob)


def train_key(cfg: Config, name: str) -> str:
    """Hash of what a learned generator learns from (its training settings but the runtime ones, its data's
    content, the seed and device): trials with equal keys share one trained model when the sweep searches
    that generator's training section."""
    from facefoundry.data.hashing import dvc_dir_hash
    from facefoundry.stages.generator import training_section

    section = training_section(cfg, name)
    data = dvc_dir_hash(section.dataset) if Path(section.dataset).exists() else section.dataset
    return _digest({name: result_settings(section), "data": data, "seed": cfg.base.seed, "device": cfg.base.device})


def realism_key(cfg: Config, key: str) -> str:
    """Hash of the realism stage's settings on top of dataset ``key`` (its target folder by path)."""
    return _digest(
        {
            "dataset": key,
            "realism": result_settings(cfg.realism),
            "target": cfg.realism.target_dir,
            "seed": cfg.base.seed,
            "size": cfg.base.image_size,
            "device": cfg.base.device,
        }
    )


def _for_judge(value: Any, judge: str) -> Any:
    """A per-judge threshold as a key hashes it: an explicit judge's own value (so keys of explicit settings are
    what they were before thresholds could be per judge); ``auto`` keeps the whole mapping."""
    from facefoundry.errors import FaceFoundryError
    from facefoundry.quality.judging import AUTO, judge_threshold

    if judge == AUTO or not isinstance(value, dict):
        return value
    try:
        return judge_threshold(value, judge, "threshold")
    except FaceFoundryError:  # no value for that judge: the stage says so; the key keeps the mapping
        return value


def quality_settings(q: Any) -> dict[str, Any]:
    """``quality`` as keys hash it: the judge is keyed on its setting (``auto`` with ``judge_order``; an explicit
    judge with its own thresholds), not resolved, so a key never reads a dataset's metadata."""
    out = q.model_dump(mode="json")
    if q.judge != "auto":
        out.pop("judge_order", None)
    out["separability_threshold"] = _for_judge(out["separability_threshold"], q.judge)
    out["leakage"]["threshold"] = _for_judge(out["leakage"]["threshold"], q.judge)
    return out


def fuse_key(cfg: Config) -> str:
    """Hash of what ``fuse`` reads: its settings (not its output folder), the judge settings it selects with,
    the seed, and each source dataset's content hash. Trials with equal keys share one fused dataset."""
    from facefoundry.data.hashing import dvc_dir_hash

    f = result_settings(cfg.fuse)
    q = cfg.quality
    f["overlap_threshold"] = _for_judge(f["overlap_threshold"], q.judge)
    qs = quality_settings(q)
    judge = {"judge": q.judge, "centred": q.centred, "per": q.images_per_identity, "leakage": qs["leakage"]}
    if "judge_order" in qs:
        judge["order"] = qs["judge_order"]
    data = {name: dvc_dir_hash(s.path) if Path(s.path).is_dir() else s.path for name, s in cfg.fuse.sources.items()}
    return _digest({"fuse": f, "quality": judge, "seed": cfg.base.seed, "sources": data})


def validation_key(cfg: Config, key: str) -> str:
    """Hash of what ``validate`` reads besides the dataset itself."""
    t = cfg.train
    return _digest(
        {
            "dataset": key,
            "size": cfg.base.image_size,
            "seed": cfg.base.seed,
            "min": t.min_images_per_identity,
            "non_rgb": t.non_rgb,
            "identity": cfg.identity.model_dump(mode="json"),
            "quality": quality_settings(cfg.quality),
        }
    )


def trial_key(experiment_tag: str, trial_id: str) -> str:
    """``<number>_<trial id>``: the trial's folder and (as ``trial_<key>``) its Ray name.

    The number counts trials in creation order from 0 (kept by ``Tuner.restore``): Ray's grid generator
    puts it in the trial id (``ab12c_00003``), its search generator at the head of the experiment tag
    (counting from 1).
    """
    tail = trial_id.rsplit("_", 1)[-1] if "_" in trial_id else ""
    head = str(experiment_tag).split("_", 1)[0]
    if len(tail) == 5 and tail.isdigit():
        number = int(tail)
    elif head.isdigit():
        number = int(head) - 1
    else:
        return trial_id
    return f"{number:03d}_{trial_id}"


def trial_number(key: str) -> int:
    """``003_ab12cd34`` → 3 (-1 when the key has no number)."""
    head = key.split("_", 1)[0]
    return int(head) if head.isdigit() and "_" in key else -1
