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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def dist_info() -> tuple[int, int]:
    """(rank, world size); a process group is used only when launched with WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and torch.distributed.is_available() and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if world > 1:
        return torch.distributed.get_rank(), world
    return 0, 1
