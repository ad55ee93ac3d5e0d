"""Rendering images/s at 112×112 and at the default size, and realism-transfer seconds/image.

    python benchmarks/render_throughput.py
The seed paper reports 0.015 s/image (VSAIT, GPU) to 8.7 s/image (DDIM inversion, GPU).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import save
from facefoundry.config import load_config
from facefoundry.generators.realism.cyclegan import CycleGANTranslator, ResnetGenerator
from facefoundry.generators.realism.ddim import DDIMTranslator, build_unet
from facefoundry.generators.realism.images import to_signed
from facefoundry.generators.render.generate import sample_identities
from facefoundry.generators.render.renderer import FaceRenderer

ROOT = Path(__file__).resolve().parents[1]


def render_rate(size: int, n: int = 128, batch: int = 64) -> float:
    cfg = load_config(ROOT / "params.yaml")
    r = FaceRenderer(cfg.generate.render, size)
    ids = sample_identities(n, 0.3, 0)
    var = r.sample_variations(n, np.random.default_rng(0))
    r.render(ids[:4], var[:4])
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        r.render(ids[s : s + batch], var[s : s + batch])
    return n / (time.perf_counter() - t0)


def translate_seconds(translator, size: int, n: int) -> float:
    x = to_signed(np.random.default_rng(0).integers(0, 255, (n, size, size, 3), dtype=np.uint8))
    translator(x[:2])
    t0 = time.perf_counter()
    for s in range(0, n, 32):
        translator(x[s : s + 32])
    return (time.perf_counter() - t0) / n


def main() -> None:
    cfg = load_config(ROOT / "params.yaml")
    r = cfg.realism
    size = cfg.base.image_size
    res = {
        "render_images_per_s@112": round(render_rate(112), 1),
        f"render_images_per_s@{size}": round(render_rate(size), 1),
    }
    with torch.inference_mode():
        gen = CycleGANTranslator(ResnetGenerator(r.gen_width, r.gen_blocks).eval(), 1.0)
        res[f"cyclegan_seconds_per_image@{size}"] = round(translate_seconds(gen, size, 256), 5)
        from diffusers import DDPMScheduler

        unet = build_unet(size, r.unet_width).eval()
        sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
        ddim = DDIMTranslator(unet, sched.config, r.ddim_steps, r.strength)
        res[f"ddim_inversion_seconds_per_image@{size} (steps={r.ddim_steps}, strength={r.strength})"] = round(
            translate_seconds(ddim, size, 32), 4
        )
    res["paper_gpu_seconds_per_image"] = {"VSAIT": 0.015, "DDIM inversion": 8.7}
    save("render_throughput", res)


if __name__ == "__main__":
    main()
