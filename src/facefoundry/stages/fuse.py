"""``fuse`` stage: datasets of different generators as one, after a cross-source identity-overlap check."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facefoundry.config import Config
from facefoundry.data.hashing import dvc_dir_hash
from facefoundry.io import atomic_write_json
from facefoundry.stages.common import log
from facefoundry.tracking import log_dataset_version, log_figure, log_metrics, run_name, stage_run


def run_fuse(cfg: Config, metrics_out: str | None = None, products: str | Path | None = None) -> dict:
    """Fuse ``fuse.sources`` into ``fuse.out``; the identity-centre map goes to ``products`` (and MLflow)."""
    from facefoundry.fusion.fuse import fuse, fusion_judge
    from facefoundry.plots import centre_map
    from facefoundry.quality.judging import judge_threshold

    f = cfg.fuse
    digests = {name: dvc_dir_hash(s.path) for name, s in f.sources.items() if Path(s.path).is_dir()}
    what = " + ".join(f"{n} ({s.identities or (f'{s.share:.0%}' if s.share else 'all')})" for n, s in f.sources.items())
    judge = fusion_judge(cfg, log)  # judge ≠ teacher: of every source
    overlap_at = judge_threshold(f.overlap_threshold, judge, "fuse.overlap_threshold")
    log(f"fuse: {judge.describe()}; overlap ≥ {overlap_at:g}")
    with stage_run(
        cfg,
        "fuse",
        ["fuse", "quality"],
        {"facefoundry.dataset": f.out, "data.judge": judge.label, "data.judge_teachers": ",".join(judge.teachers)},
        name=run_name("fuse", what, f.strategy, f"overlap {f.overlap} ≥ {overlap_at:g} ({judge.label})"),
        products=products,
    ):
        for name, s in f.sources.items():
            if name in digests:
                log_dataset_version(s.path, prefix=f"source.{name}", digest=digests[name], context="fusion")
        res = fuse(cfg, digests, log=log, judge=judge)
        # the embedding map: every identity of every source, taken ones opaque, overlaps joined
        centres = np.concatenate([s.centres for s in res.sources])
        groups = [s.name for s in res.sources for _ in range(len(s.labels))]
        offset = {s.name: o for s, o in zip(res.sources, np.cumsum([0] + [len(s.labels) for s in res.sources]))}
        pos = {(s.name, int(lab)): offset[s.name] + k for s in res.sources for k, lab in enumerate(s.labels)}
        pairs = [(pos[(p["a"], p["a_label"])], pos[(p["b"], p["b_label"])]) for p in res.selection.overlaps]
        leaked = [pos[(n, lab)] for n, labs in res.leaked.items() for lab in labs]
        log_figure(
            centre_map(
                f"fusion: identity centres by source ({len(pairs)} overlapping pairs)",
                centres,
                groups,
                pairs,
                leaked,
                "leaked",
            ),
            "plots/fusion_identity_centres.png",
        )
        log_metrics({f"fuse/{k}": v for k, v in res.metrics.items()})
        log_dataset_version(res.out, digest=dvc_dir_hash(res.out), context="fused")
        atomic_write_json(metrics_out or Path(f.out).with_name(f"{Path(f.out).name}_fuse.json"), res.metrics)
        return res.metrics
