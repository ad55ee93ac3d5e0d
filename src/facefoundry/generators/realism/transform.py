"""Realism transfer as a dataset → dataset transform that keeps every label."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from facefoundry.data.sources import ManifestSource, open_source
from facefoundry.data.writer import DatasetWriter
from facefoundry.errors import FaceFoundryError
from facefoundry.generators.realism.cyclegan import INDEX, CycleGANTranslator, ResnetGenerator
from facefoundry.generators.realism.images import to_signed, to_uint8
from facefoundry.progress import track


class Translator(Protocol):
    method: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


class Passthrough:
    method = "none"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x


def load_translator(folder: str | Path, strength: float, ddim_steps: int) -> Translator:
    folder = Path(folder)
    index = folder / INDEX
    if not index.is_file():
        raise FaceFoundryError(f"{folder}: not a saved realism model (no {INDEX})")
    method = json.loads(index.read_text())["method"]
    if method == "cyclegan":
        return CycleGANTranslator(ResnetGenerator.from_pretrained(folder / "generator_ab"), strength)
    from diffusers import DDPMScheduler, UNet2DModel

    from facefoundry.generators.realism.ddim import DDIMTranslator

    unet = UNet2DModel.from_pretrained(str(folder / "unet")).eval()
    return DDIMTranslator(unet, DDPMScheduler.from_pretrained(str(folder / "scheduler")).config, ddim_steps, strength)


def translate_dataset(
    source: str | Path,
    out: str | Path,
    translator: Translator,
    strength: float,
    batch: int = 32,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] = print,
) -> Path:
    """Write ``out``: every image of ``source`` translated, same label and identity."""
    src = open_source(source)
    params = src.manifest if isinstance(src, ManifestSource) else None
    meta = {
        "generator": "realism",
        "method": translator.method,
        "strength": strength,
        "source": str(source),
        "num_classes": src.num_classes,
    }
    with DatasetWriter(out, meta) as w, track(total=len(src), desc=f"realism {translator.method}", unit="img") as bar:
        for s in range(0, len(src), batch):
            idx = range(s, min(s + batch, len(src)))
            x = to_signed(np.stack([src.load(i) for i in idx])).to(device)
            y = to_uint8(translator(x))
            for k, i in enumerate(idx):
                origin = params.path[i] if params else str(i)
                extra = {
                    "source_image": origin,
                    "method": translator.method,
                    "strength": strength,
                    "source_params": params.row_params(i) if params else {},
                }
                w.add(
                    y[k], int(src.labels[i]), src.identities[int(src.labels[i])], f"realism:{translator.method}", extra
                )
            bar.update(len(idx))
    log(f"realism {translator.method}: {len(src)} images → {out}")
    return Path(out)
