"""Reading a resumable job's checkpoint: weights and plain values only, never arbitrary pickles; and the
fingerprint that says whether a checkpoint was made under the same result settings, data and teacher.

A checkpoint that cannot be read (truncated by a full disk, damaged, or holding objects a
weights-only load refuses) is moved aside — not deleted — and the job starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from facefoundry.config import Config, result_settings


def read_checkpoint(
    path: str | Path, map_location: str | torch.device, log: Callable[[str], None]
) -> dict[str, Any] | None:
    """The checkpoint's dict, or None when there is none or it is unreadable (then kept as ``<name>.unreadable``)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol notes name its unsafe switch: not for users
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(state, dict):
            raise ValueError("not a dict")
        return state
    except Exception as exc:  # a damaged checkpoint must not stop a fresh start
        aside = path.with_name(path.name + ".unreadable")
        try:
            os.replace(path, aside)
            where = f"moved to {aside}"
        except OSError:
            where = "left in place"
        log(f"{path}: unreadable checkpoint ({exc.__class__.__name__}); {where}; starting afresh")
        return None


def fingerprint(
    cfg: Config,
    dataset_digest: str,
    init_digest: str | None = None,
    domain_digest: str | None = None,
    teacher_digest: str | None = None,
    world: int = 1,
) -> str:
    """What a checkpoint or model folder was made under; ``world``: the number of DDP processes, which sets the
    global batch (``world`` × ``train.batch_size``). One process fingerprints as before DDP was counted."""
    t = result_settings(cfg.train)  # what changes what is learned (the schema's marks say); a checkpoint made
    if domain_digest is None:  # under other runtime settings resumes. No second domain: no domain entry
        t.pop("domain_mixup", None)
    else:
        t["domain_mixup"] = {**t["domain_mixup"], "digest": domain_digest}
    if cfg.train.objective == "labels":  # the label regime fingerprints as before distillation existed
        for k in ("objective", "teacher", "distill"):
            t.pop(k, None)
    else:  # what the student learns towards: the teacher's vectors themselves, not its name or path
        t["teacher_digest"] = teacher_digest
    if not cfg.train.partial_fc.enabled:  # the full head fingerprints as before Partial FC existed
        t.pop("partial_fc", None)
    if cfg.train.init is None:  # no starting model
        t.pop("init_arch", None)
    else:  # the starting weights themselves, not their path
        t["init_digest"] = init_digest
    made = {"train": t, "seed": cfg.base.seed, "size": cfg.base.image_size, "data": dataset_digest}
    blob = json.dumps({**made, "processes": world} if world > 1 else made, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
