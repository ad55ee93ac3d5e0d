"""``realism-target`` and ``realism`` stages."""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import numpy as np

from facefoundry.config import Config
from facefoundry.data.sources import FaceSource, open_source
from facefoundry.device import resolve_device
from facefoundry.generators.realism.images import load_folder, to_signed
from facefoundry.generators.realism.target import make_photographic_target
from facefoundry.generators.realism.transform import Passthrough, Translator, translate_dataset
from facefoundry.plots import image_grid, labelled_grid
from facefoundry.stages.common import log
from facefoundry.tracking import log_dataset_version, log_figure, log_image, log_metrics, run_name, stage_run


def run_realism_target(cfg: Config, out: str = "outputs/realism_target") -> Path:
    with stage_run(cfg, "realism-target", ["realism"], name=run_name("realism-target", "photographic")):
        path = make_photographic_target(cfg, out, log)
        imgs = load_folder(path, cfg.base.image_size, limit=32)
        log_image(image_grid([list(imgs[i : i + 8]) for i in range(0, 32, 8)]), "samples/target.png")
        return path


def fit_translator(cfg: Config, source: FaceSource, target_images: np.ndarray | None) -> Translator:
    """Train the configured translator (``none``: identity, nothing to train or decode)."""
    r, device = cfg.realism, resolve_device(cfg.base.device)
    if r.method == "none" or target_images is None:
        Path(r.model_out).mkdir(parents=True, exist_ok=True)
        return Passthrough()
    size = cfg.base.image_size
    a = to_signed(np.stack([source.load(i, size) for i in range(len(source))]))
    b = to_signed(target_images)
    if r.method == "cyclegan":
        from facefoundry.generators.realism.cyclegan import CycleGANTranslator, ResnetGenerator, train_cyclegan

        nets = train_cyclegan(
            a,
            b,
            r.train_steps,
            r.batch_size,
            r.lr,
            r.lambda_cycle,
            r.lambda_identity,
            r.gen_width,
            r.gen_blocks,
            cfg.base.seed,
            device,
            Path(r.model_out),
            log,
        )
        return CycleGANTranslator(cast(ResnetGenerator, nets["generator_ab"]), r.strength)  # train_cyclegan built it
    from facefoundry.generators.realism.ddim import DDIMTranslator, train_ddim

    unet, sched = train_ddim(
        b, r.train_steps, r.batch_size, r.lr, r.unet_width, cfg.base.seed, device, Path(r.model_out), log
    )
    return DDIMTranslator(unet, sched.config, r.ddim_steps, r.strength)


def run_realism(cfg: Config) -> Path:
    r = cfg.realism
    with stage_run(
        cfg,
        "realism",
        ["realism"],
        {"facefoundry.realism_method": r.method},
        name=run_name("realism", r.method, Path(r.source).name),
    ):
        src = open_source(r.source)
        size = cfg.base.image_size
        target = load_folder(r.target_dir, size, r.target_crop, r.target_limit) if r.method != "none" else None
        t0 = time.perf_counter()
        translator = fit_translator(cfg, src, target)
        fit_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        out = translate_dataset(
            r.source, r.out, translator, r.strength, batch=32, device=resolve_device(cfg.base.device), log=log
        )
        apply_s = time.perf_counter() - t1
        dst = open_source(out)
        log_metrics(
            {
                "fit_seconds": fit_s,
                "translate_seconds": apply_s,
                "translate_seconds_per_image": apply_s / len(dst),
                "images": len(dst),
            }
        )
        picks = np.linspace(0, len(src) - 1, 8).astype(int)
        rows = [[src.load(i) for i in picks], [dst.load(i) for i in picks]]
        if target is not None:
            rows.append(list(target[:8]))
        names = ["source (render)", f"translated ({r.method})", "target (unpaired)"][: len(rows)]
        log_figure(labelled_grid(rows, names, "realism transfer: columns are the same image"), "samples/realism.png")
        log_dataset_version(out)
        log(f"{r.method}: {len(dst)} images → {out} (fit {fit_s:.0f}s, {apply_s / len(dst) * 1000:.1f} ms/image)")
        return out
