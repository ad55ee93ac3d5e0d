"""Stage ``synlfw``: SynFace's Syn-LFW, a synthetic twin of a verification benchmark (same pairs, unseen identities)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from facefoundry.config import Config
from facefoundry.generators.synlfw import make_synlfw, plan_synlfw, sidecar_path
from facefoundry.stages.common import log
from facefoundry.tracking import log_metrics, run_name, stage_run
from facefoundry.verification.binfile import read_bin


def run_synlfw(cfg: Config) -> Path:
    """Write ``cfg.synlfw.out`` (a .bin and its JSON record) in an MLflow run; returns the .bin."""
    s = cfg.synlfw
    planned = plan_synlfw(cfg)  # every input checked before the run opens
    with stage_run(
        cfg,
        "synlfw",
        ["generate", "benchmark", "synlfw"],
        {"facefoundry.generator": s.generator},
        name=run_name("benchmark", "synlfw", s.generator, f"R={s.ratio:g}"),
    ):
        t0 = time.perf_counter()
        path = make_synlfw(cfg, log, planned)
        pairs = read_bin(path)
        meta = json.loads(sidecar_path(path).read_text())
        log_metrics(
            {
                "pairs": len(pairs.issame),
                "positives": int(pairs.issame.sum()),
                "identities": meta["identities"],
                "ratio": s.ratio,
                "mixed_images": meta["mixed_images"],
                "seconds": time.perf_counter() - t0,
            }
        )
        log(
            f"wrote Syn-LFW: {len(pairs.issame)} pairs, {meta['identities']} identities, R = {s.ratio:g} "
            f"({meta['mixed_images']} images mixed), generator {s.generator} → {path} (record: {sidecar_path(path)})"
        )
    return Path(path)
