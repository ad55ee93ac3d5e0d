"""Partial FC (after arcface_torch's PartialFC v2, An et al. 2022): the margin head's class centres sharded across
the DDP processes and, per step, sampled.

Rank ``r`` of ``W`` holds the contiguous block of ``C // W`` (+1 for the first ``C % W`` ranks) class centres. Each
step every rank gathers the whole global batch's embeddings, norms and targets, and scores them against its own
block: the positives of the batch (every class some target names) always, and negatives drawn at random up to
``int(sample_rate × its block)`` centres (``sample_rate`` 1.0: the whole block, which is model parallelism and no
sampling). The margin is the :class:`~facefoundry.models.heads.MarginHead`'s (ArcFace, CosFace, combined, AdaFace,
softmax), applied by the rank that holds the target's column, soft targets (identity and domain mixup) included.
The softmax spans the ranks: the row maxima and the sums of exponentials are reduced over them, so every rank
computes the same loss, the global batch's mean, which equals one :class:`MarginHead` on the same batch.

Gradients: a rank's class centres get the gradient of that loss for its own columns (they are outside DDP). The
gathered embeddings' gradients are summed over the ranks and each rank keeps its own rows, multiplied by ``W``
because DDP then averages the backbone's gradients over the ranks; so the backbone steps as one process would.

AdaFace's norm statistics are updated from the global batch's norms (identical on every rank). One process
(``W = 1``) is the same head without communication, and still samples negatives when ``sample_rate < 1``.
The checkpoint holds every rank's block gathered into one ``[C, D]`` matrix (and its momentum), so resuming slices it
again; the model folder keeps the backbone only.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from facefoundry.config import HeadCfg, PartialFCCfg
from facefoundry.errors import FaceFoundryError
from facefoundry.models.heads import MarginHead, as_soft, update_norm_stats
from facefoundry.models.margins import adaface_margin, combined_margin


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def shard(num_classes: int, rank: int, world: int) -> tuple[int, int]:
    """``(first class, number of classes)`` held by ``rank``: contiguous blocks, the first ``C % W`` one larger."""
    base, extra = divmod(num_classes, world)
    return base * rank + min(rank, extra), base + int(rank < extra)


class _Gather(torch.autograd.Function):
    """Every rank's ``[B, ...]`` rows concatenated; backward: the gradients summed over the ranks, own rows × ``W``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        rank, world = dist.get_rank(), dist.get_world_size()
        return grad[rank * ctx.rows : (rank + 1) * ctx.rows] * world


class _SumOverRanks(torch.autograd.Function):
    """All-reduce sum whose backward is the identity: every rank computes the same loss from the sum, so each
    rank's own term receives that loss's gradient once."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


def _gather(x: torch.Tensor, grad: bool = False) -> torch.Tensor:
    if not _active():
        return x
    if grad:
        return _Gather.apply(x)
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def _sum(x: torch.Tensor) -> torch.Tensor:
    return _SumOverRanks.apply(x) if _active() else x


class PartialFC(nn.Module):
    """A :class:`MarginHead` whose class centres are this rank's block (see the module's docstring)."""

    batch_mean: torch.Tensor  # AdaFace's norm statistics, registered in __init__
    batch_std: torch.Tensor

    def __init__(self, full: MarginHead, sample_rate: float = 1.0, rank: int = 0, world: int = 1):
        super().__init__()
        c = full.config
        if c["num_classes"] < world:
            raise FaceFoundryError(
                f"train.partial_fc: {c['num_classes']} classes cannot be shared by {world} processes (one at least each)"
            )
        self.num_classes, self.sample_rate, self.rank, self.world = c["num_classes"], sample_rate, rank, world
        self.kind, self.s, self.margins = full.kind, full.s, full.margins
        self.m, self.h, self.t_alpha = full.m, full.h, full.t_alpha
        self.start, self.num_local = shard(self.num_classes, rank, world)
        self.num_sample = max(1, int(sample_rate * self.num_local))
        # the rows of the full head's initial centres (the same random draw as MarginHead): equal at sample rate 1
        self.weight = nn.Parameter(full.weight.detach()[self.start : self.start + self.num_local].clone())
        self.register_buffer("batch_mean", full.batch_mean.detach().clone())
        self.register_buffer("batch_std", full.batch_std.detach().clone())
        self.sampled: torch.Tensor | None = None  # the last step's centres (indices into this block)
        # the last step's predicted classes of this rank's rows (-1: a tie across ranks), for the training accuracy
        self.predicted = torch.empty(0, dtype=torch.long)

    def _sample(self, positives: torch.Tensor) -> torch.Tensor:
        """Sorted indices into the block: every positive, then random negatives up to ``num_sample``."""
        positives = torch.unique(positives)
        if positives.numel() >= self.num_sample:
            return positives
        score = torch.rand(self.num_local, device=self.weight.device)
        score[positives] = 2.0  # above any random score: always kept
        return torch.topk(score, self.num_sample).indices.sort().values

    def _margin(self, target: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        if self.kind == "adaface":
            return adaface_margin(target, norms, self.batch_mean, self.batch_std, self.m, self.h)
        return combined_margin(target, *self.margins)

    def _update_norm_stats(self, norms: torch.Tensor) -> None:
        update_norm_stats(self.batch_mean, self.batch_std, norms, self.t_alpha)

    def forward(
        self, emb: torch.Tensor, norms: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        labels, weights = as_soft(labels, weights)
        if _active():  # soft targets may be wider on one rank (K = 1 hard, 2 identity mixup, more with domain mixup)
            width = torch.tensor([labels.shape[1]], device=labels.device)
            dist.all_reduce(width, op=dist.ReduceOp.MAX)
            pad = int(width) - labels.shape[1]  # padded with the first label at weight 0: no term, no new positive
            labels = torch.cat([labels, labels[:, :1].expand(-1, pad)], 1)
            weights = torch.cat([weights, weights.new_zeros(weights.shape[0], pad)], 1)
        rows = emb.shape[0]
        emb_all = _gather(emb.float(), grad=True)
        norms_all, labels_all = _gather(norms.detach().float()), _gather(labels)
        w_all = _gather(weights.float())
        if self.kind == "adaface" and self.training:
            self._update_norm_stats(norms_all)
        local = labels_all - self.start
        inside = (local >= 0) & (local < self.num_local)
        if self.training and self.sample_rate < 1:
            index = self._sample(local[inside])
            cols = torch.searchsorted(index, local.clamp(0, self.num_local - 1)).clamp(max=index.numel() - 1)
            centres = self.weight[index]
        else:
            index, cols, centres = None, local.clamp(0, self.num_local - 1), self.weight
        self.sampled = index
        cos = F.linear(F.normalize(emb_all, dim=1), F.normalize(centres.float(), dim=1)).clamp(-1, 1)
        z = cos.new_zeros(())
        for k in range(labels_all.shape[1]):  # MarginHead's mixed logits, on this rank's columns
            col = cols[:, k : k + 1]
            target = cos.gather(1, col)
            adjusted = torch.where(inside[:, k : k + 1], self._margin(target.squeeze(1), norms_all)[:, None], target)
            z = z + w_all[:, k : k + 1] * (self.s * cos.scatter(1, col, adjusted))
        with torch.no_grad():  # the softmax's shift, and this step's predictions (the argmax over every rank)
            top, arg = cos.max(1)
            best = top.clone()
            if _active():
                dist.all_reduce(best, op=dist.ReduceOp.MAX)
            shift = z.max(1).values
            if _active():
                dist.all_reduce(shift, op=dist.ReduceOp.MAX)
            cls = self.start + (index[arg] if index is not None else arg)
            pred = _sum(torch.where(top == best, cls, torch.zeros_like(cls)))  # the one rank that holds the best
            claims = _sum((top == best).long())
            pred = torch.where(claims > 1, torch.full_like(pred, -1), pred)  # exact ties across ranks: no prediction
            r = dist.get_rank() if _active() else 0
            self.predicted = pred[r * rows : (r + 1) * rows]
        lse = torch.log(_sum(torch.exp(z - shift[:, None]).sum(1))) + shift
        z_target = _sum(torch.where(inside, z.gather(1, cols), z.new_zeros(())))
        return (w_all * (lse[:, None] - z_target)).sum(1).mean()

    # -- checkpoints: every rank's block in one matrix ----------------------------------------------------------
    def gather_rows(self, block: torch.Tensor) -> torch.Tensor:
        """Every rank's ``[num_local, ...]`` block stacked into ``[num_classes, ...]`` (a collective)."""
        if not _active():
            return block
        most = shard(self.num_classes, 0, self.world)[1]
        padded = torch.zeros((most, *block.shape[1:]), dtype=block.dtype, device=block.device)
        padded[: block.shape[0]] = block
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([p[: shard(self.num_classes, r, self.world)[1]] for r, p in enumerate(parts)])

    def own_rows(self, full: torch.Tensor) -> torch.Tensor:
        return full[self.start : self.start + self.num_local].clone()


def make_head(
    head: HeadCfg, pfc: PartialFCCfg, num_classes: int, embedding_size: int, rank: int = 0, world: int = 1
) -> MarginHead | PartialFC:
    """``train.head``'s :class:`MarginHead`, or (``train.partial_fc.enabled``) its :class:`PartialFC`: this rank's
    block of the same initial centres."""
    h = head
    full = MarginHead(num_classes, embedding_size, h.name, h.s, h.m1, h.m2, h.m3, h.m, h.h, h.t_alpha)
    return PartialFC(full, pfc.sample_rate, rank, world) if pfc.enabled else full


def _locate(net: nn.Module, opt: torch.optim.Optimizer, head: PartialFC) -> tuple[str, int]:
    """The head's weight: its name in ``net.state_dict()`` and its index in ``opt.state_dict()['state']``."""
    name = next(n for n, p in net.named_parameters() if p is head.weight)
    params = [p for g in opt.param_groups for p in g["params"]]
    return name, next(i for i, p in enumerate(params) if p is head.weight)


def sharded_names(net: nn.Module) -> list[str]:
    """The parameters and buffers DDP must leave alone: every :class:`PartialFC`'s (each rank holds its own)."""
    return [
        f"{prefix}.{name}" if prefix else name
        for prefix, m in net.named_modules()
        if isinstance(m, PartialFC)
        for name, _ in [*m.named_parameters(), *m.named_buffers()]
    ]


def full_state(net: nn.Module, opt: torch.optim.Optimizer, head: nn.Module | None) -> tuple[dict, dict]:
    """``net`` and ``opt`` state dicts, a :class:`PartialFC`'s centres and their momentum gathered from every rank
    (a collective: every rank calls it, rank 0 writes the result)."""
    net_state, opt_state = net.state_dict(), opt.state_dict()
    if isinstance(head, PartialFC):
        name, i = _locate(net, opt, head)
        net_state[name] = head.gather_rows(head.weight.detach())
        slot = opt_state["state"].get(i)
        if slot is not None and slot.get("momentum_buffer") is not None:  # a new dict: the live state is untouched
            opt_state["state"][i] = {**slot, "momentum_buffer": head.gather_rows(slot["momentum_buffer"])}
    return net_state, opt_state


def own_state(net_state: dict, opt_state: dict, net: nn.Module, opt: torch.optim.Optimizer, head: nn.Module | None):
    """The inverse of :func:`full_state`: this rank's rows of the gathered centres and momentum."""
    if isinstance(head, PartialFC):
        name, i = _locate(net, opt, head)
        net_state = {**net_state, name: head.own_rows(net_state[name])}
        slot = opt_state["state"].get(i)
        if slot is not None and slot.get("momentum_buffer") is not None:
            state = {**opt_state["state"], i: {**slot, "momentum_buffer": head.own_rows(slot["momentum_buffer"])}}
            opt_state = {**opt_state, "state": state}
    return net_state, opt_state
