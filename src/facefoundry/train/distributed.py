"""Several training processes (DDP): each one's device, the process group, and the few values they share.

``facefoundry train --nproc N`` (or ``torchrun ... -m facefoundry train`` across nodes) starts N processes with
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` set. Each takes GPU ``LOCAL_RANK`` (``cpu`` stays ``cpu``); the process
group is initialised once, NCCL on CUDA and gloo on CPU, and :func:`shutdown` destroys it. One process alone
creates no group, and every helper here is then a no-op.

What holds across world sizes: the ranks share every epoch's shuffled order (``Feeder``: rank ``r`` takes
positions ``r, r + W, …``), so with the same global batch (``W ×`` the per-rank ``train.batch_size``) each
step sees the same set of images as one process does, and the gradients DDP averages are the one process's
mean gradient. BatchNorm normalises with each rank's own batch (no SyncBatchNorm: arcface_torch's choice, and
SyncBatchNorm has no CPU kernel), and per-image randomness (flips, augmentation, dropout) is drawn per rank;
both are reproducible for a given world size, not equal to one process's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

from facefoundry.device import dist_info, resolve_device
from facefoundry.errors import FaceFoundryError


def setup(spec: str) -> tuple[int, int, torch.device]:
    """``(rank, world size, device)`` of this process: ``base.device`` with the GPU of ``LOCAL_RANK``, and
    the process group initialised when ``WORLD_SIZE > 1`` (once per process)."""
    rank, world = dist_info()
    device = resolve_device(spec)
    local = os.environ.get("LOCAL_RANK")
    if device.type == "cuda" and local is not None:
        if world > 1 and device.index is not None:
            raise FaceFoundryError(
                f"base.device={spec!r} names one GPU, but each of the {world} processes takes GPU LOCAL_RANK; "
                "set base.device to auto or cuda"
            )
        if device.index is None:
            device = torch.device("cuda", int(local))
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise FaceFoundryError(
                f"LOCAL_RANK {local}: this node has {torch.cuda.device_count()} CUDA devices; "
                "start at most one process per GPU (--nproc)"
            )
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def device_ids(device: torch.device) -> list[int] | None:
    """DDP's ``device_ids``: this process's one GPU, None on CPU."""
    return [device.index] if device.type == "cuda" and device.index is not None else None


def wrap(net: nn.Module, device: torch.device, world: int, ignore: Sequence[str] = ()) -> nn.Module:
    """``net`` under DDP when several processes train (gradients all-reduced every step), else ``net``. ``ignore``:
    parameter and buffer names DDP neither broadcasts nor all-reduces (Partial FC's per-rank class centres)."""
    if world <= 1:
        return net
    if ignore:  # what DDP's own static setter stores (it was renamed across torch releases)
        net._ddp_params_and_buffers_to_ignore = list(ignore)  # type: ignore[assignment]
        for name, p in net.named_parameters():
            if name in ignore:
                p._ddp_ignored = True  # type: ignore[attr-defined]
    return nn.parallel.DistributedDataParallel(net, device_ids=device_ids(device))


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if active():
        dist.barrier()


def all_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Each value summed over the ranks (float64; ``device`` because NCCL reduces CUDA tensors only)."""
    if not active():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def spread(value: int, device: torch.device) -> tuple[int, int]:
    """``(min, max)`` of an integer over the ranks: equal when every rank holds the same value."""
    if not active():
        return value, value
    t = torch.tensor([-value, value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return -int(t[0]), int(t[1])


def from_rank_zero(value: object) -> object:
    """Rank 0's ``value`` on every rank (a decision only rank 0 can make, such as "nothing to do")."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown() -> None:
    """Destroy the process group, if this process has one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def launched() -> bool:
    """Whether torchrun (or another launcher that sets the DDP environment) started this process."""
    return "LOCAL_RANK" in os.environ or "TORCHELASTIC_RUN_ID" in os.environ


def without_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` less ``--nproc N`` / ``--nproc=N``: torchrun's own parser reads ``--nproc`` anywhere on its command
    line as an ambiguous prefix of ``--nproc-per-node`` and stops; the launched processes need no ``--nproc``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def torchrun_command(nproc: int, device_spec: str, argv: Sequence[str]) -> list[str] | None:
    """``-m torch.distributed.run --standalone --nproc-per-node N -m facefoundry <argv>`` (for ``python``): the same
    command in ``nproc`` processes on this node; None when one process trains here (``nproc`` 1, or launched)."""
    if nproc <= 1 or launched():
        return None
    if device_spec != "cpu" and torch.cuda.is_available():
        if device_spec not in ("auto", "cuda"):
            raise FaceFoundryError(
                f"--nproc {nproc}: base.device={device_spec!r} names one GPU; each process takes its own "
                "(set base.device to auto or cuda)"
            )
        if nproc > torch.cuda.device_count():
            raise FaceFoundryError(
                f"--nproc {nproc}: this node has {torch.cuda.device_count()} CUDA devices (one process per GPU)"
            )
    run = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "facefoundry"]
    return [*run, *without_nproc(argv)]
