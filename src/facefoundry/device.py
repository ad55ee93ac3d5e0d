"""Device and distributed setup: CPU by default, CUDA when present, DDP when launched so."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from facefoundry.errors import FaceFoundryError


def resolve_device(spec: str = "auto") -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise FaceFoundryError(f"base.device={spec!r} but no CUDA device is available (use 'auto' or 'cpu')")
    try:
        return torch.device(spec)
    except RuntimeError:
        raise FaceFoundryError(f"base.device={spec!r} is not a torch device (auto, cpu, cuda, cuda:N)") from None


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype mixed precision uses on ``device``, or None where it would not pay.

    CUDA: float16 (with a GradScaler), as arcface_torch trains. CPU: bfloat16 where the processor computes it
    natively (AVX512-BF16 or AMX: oneDNN's bf16 convolutions; measured +20–30 % for the default's IResNet on a
    2-core AVX512-BF16 machine); elsewhere bf16 is emulated and slower than float32, so None."""
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu":
        native = [getattr(torch.cpu, f, lambda: False) for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        if any(f() for f in native):
            return torch.bfloat16
    return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def dist_info() -> tuple[int, int]:
    """(rank, world size) as the launcher (torchrun) set them; (0, 1) for one process. Reading them creates
    no process group: ``facefoundry.train.distributed.setup`` does, once, when the world has several."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else (0, 1)
