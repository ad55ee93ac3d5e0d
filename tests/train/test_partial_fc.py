"""Partial FC across 2 gloo processes (one spawn for every scenario, as tests/train/test_distributed.py does), and the
trainer's Partial FC in one process.

- **head, sample rate 1.0**: a linear "backbone" under DDP and the sharded head, against one process's MarginHead on
  the same global batch of 16: the loss, the backbone's (DDP-averaged) gradients and each rank's rows of the centres'
  gradients; rank 0 feeds hard labels and rank 1 soft ones (the targets' width is padded across ranks); ArcFace and
  AdaFace (whose norm statistics come from the gathered norms).
- **head, sample rate 0.3**: 100 classes, 50 per rank, 15 sampled per rank and step (the positives, about 7, and
  random negatives): every positive is sampled and the loss falls.
- **trainer, sample rate 1.0**: 2 processes × batch 8 with Partial FC against 1 process × batch 16 with the full head
  (per-sample normalisation, flips and AMP off, as in test_distributed): every epoch's loss and every final weight,
  the ranks' blocks of centres concatenated.
- **trainer, resume**: soft labels (identity mixup), sample rate 0.5: stopped after epoch 1 and resumed equals an
  unbroken run bit for bit; the checkpoint holds all 16 classes' centres and momentum.
- **one process**: sample rate 0.5 samples, resumes bit for bit and exports the backbone alone; at 1.0, AdaFace with
  identity and domain mixup equals the full head (measured: final weights within 1.8e-7).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from facefoundry.config import load_config
from facefoundry.models.heads import MarginHead
from facefoundry.models.partial_fc import PartialFC, sharded_names
from facefoundry.train import distributed
from facefoundry.train.trainer import CHECKPOINT, Trainer
from tests.conftest import make_dataset, make_soft_dataset, tiny_config
from tests.train.test_distributed import join_world, quiet, three_runs, two_processes_and_one

# float32 sums in another order (all-reduced softmax sums, DDP's averaged half-batch gradients); measured: head loss
# relative 6.7e-8, backbone gradients 7.2e-7 and centre gradients 7.6e-6 absolute (centre gradients up to 75);
# trainer after 6 steps: epoch loss relative 2.8e-7, final weights 9.5e-7 absolute
LOSS_RTOL = 1e-6
GRAD_ATOL = 1e-4
WEIGHT_ATOL = 1e-5


class _Tiny(nn.Module):
    def __init__(self, head: nn.Module):
        super().__init__()
        self.lin, self.head = nn.Linear(12, 8), head

    def forward(self, x, labels, weights=None):
        emb = self.lin(x)
        return self.head(emb, emb.norm(dim=1, keepdim=True), labels, weights)


def _batch():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 12, generator=g), torch.randint(0, 10, (16,), generator=g)
    phi = torch.rand(8, generator=g)
    labels = torch.stack([y, torch.cat([y[:8], (y[8:] + 1) % 10])], 1)  # rank 0's rows: hard (own label, weight 0)
    weights = torch.stack([torch.cat([torch.ones(8), phi]), torch.cat([torch.zeros(8), 1 - phi])], 1)
    return x, labels, weights


def _head_step(kind: str, rank: int | None):
    """One forward and backward: the full head in one process (``rank`` None), or this rank's Partial FC."""
    torch.manual_seed(0)
    net = _Tiny(MarginHead(10, 8, kind, s=16.0))
    x, labels, weights = _batch()
    if rank is not None:
        net.head = PartialFC(net.head, 1.0, rank, 2)
        rows = slice(8 * rank, 8 * rank + 8)
        x, labels, weights = x[rows], labels[rows], weights[rows]
        if rank == 0:  # hard labels here, two-wide soft ones on rank 1
            labels, weights = labels[:, 0], None
    ddp = distributed.wrap(net, torch.device("cpu"), 2, sharded_names(net)) if rank is not None else net
    loss = ddp(x, labels, weights)
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in net.named_parameters()}, net.head.batch_mean.clone()


def _sampled_training(rank: int) -> tuple[list[float], bool]:
    torch.manual_seed(0)
    net = _Tiny(MarginHead(100, 8, "arcface", s=16.0))
    net.head = PartialFC(net.head, 0.3, rank, 2)
    ddp = distributed.wrap(net, torch.device("cpu"), 2, sharded_names(net))
    opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
    g = torch.Generator().manual_seed(2)
    centres = torch.randn(100, 12, generator=g)
    torch.manual_seed(10 + rank)  # each rank samples its own negatives
    losses, kept = [], True
    y = torch.randint(0, 100, (16,), generator=g)  # the same 16 identities, new noise every step
    for _ in range(30):
        x = centres[y] + 0.1 * torch.randn(16, 12, generator=g)
        loss = ddp(x[8 * rank : 8 * rank + 8], y[8 * rank : 8 * rank + 8])
        head = net.head
        positives = {int(c) - head.start for c in y if head.start <= c < head.start + head.num_local}
        kept &= head.sampled is not None and head.sampled.numel() == 15 and positives <= set(head.sampled.tolist())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses, kept


def _worker(rank: int, world: int, port: int, root: str) -> None:
    join_world(rank, world, port)
    import facefoundry.train.trainer as trainer_module

    tmp, out = Path(root), {}
    try:
        distributed.setup("cpu")
        out["head"] = {kind: _head_step(kind, rank) for kind in ("arcface", "adaface")}
        out["sampled"] = _sampled_training(rank)
        out.update(three_runs(tmp, trainer_module))
    finally:
        distributed.shutdown()
    torch.save(out, tmp / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def pfc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pfc")
    ds = make_dataset(tmp / "ds", identities=8, per_identity=6)  # 48 images: 3 global batches of 16 per epoch
    exact = {"dataset": str(ds), "batch_size": 8, "flip_prob": 0.0, "amp": False}
    tiny_config(tmp / "same2", train={**exact, "partial_fc": {"enabled": True}, "out": str(tmp / "same2" / "train")})
    one = tiny_config(tmp / "same1", train={**exact, "batch_size": 16, "out": str(tmp / "same1" / "train")})
    soft = make_soft_dataset(tmp / "soft", identities=16, per_identity=3)  # 48 images, 8 classes per rank
    sampled = {"dataset": str(soft), "batch_size": 4, "partial_fc": {"enabled": True, "sample_rate": 0.5}}
    for name in ("resumed", "unbroken"):
        tiny_config(tmp / name, train={**sampled, "out": str(tmp / name / "train")})
    return two_processes_and_one(tmp, _worker, one)


@pytest.mark.slow  # 2 processes start once for all four: ~15 s on 2 cores
@pytest.mark.parametrize("kind", ["arcface", "adaface"])
def test_sample_rate_one_gives_the_full_heads_loss_and_gradients(pfc, kind):
    _, ranks, _ = pfc
    loss, grads, mean = _head_step(kind, None)
    for rank in (0, 1):
        r_loss, r_grads, r_mean = ranks[rank]["head"][kind]
        assert r_loss == pytest.approx(loss, rel=LOSS_RTOL)  # the global batch's loss on every rank
        for name in ("lin.weight", "lin.bias"):  # DDP-averaged: one process's gradient
            assert torch.allclose(r_grads[name], grads[name], atol=GRAD_ATOL, rtol=0), name
        rows = slice(5 * rank, 5 * rank + 5)
        assert torch.allclose(r_grads["head.weight"], grads["head.weight"][rows], atol=GRAD_ATOL, rtol=0)
        assert torch.allclose(r_mean, mean, rtol=1e-6)  # AdaFace statistics of the whole batch's norms


@pytest.mark.slow  # 2 processes start once for all four: ~15 s on 2 cores
def test_sample_rate_point_three_keeps_positives_and_trains(pfc):
    _, ranks, _ = pfc
    for rank in ranks:
        losses, kept = rank["sampled"]
        assert kept
        assert sum(losses[-5:]) < 0.5 * sum(losses[:5]), losses
    assert ranks[0]["sampled"][0] == ranks[1]["sampled"][0]  # one loss, computed alike on both ranks


@pytest.mark.slow  # 2 processes start once for all four: ~15 s on 2 cores
def test_trainer_with_partial_fc_matches_one_process_with_the_full_head(pfc):
    _, ranks, (losses, weights) = pfc
    pfc_losses = ranks[0]["same"][0]
    assert pfc_losses == pytest.approx(losses, rel=LOSS_RTOL)
    assert ranks[1]["same"][0] == pfc_losses
    for k, v in weights.items():
        got = ranks[0]["same"][1][k]
        if k == "head.weight":  # each rank's block: classes 0-3 and 4-7
            assert got.shape == (4, 32)
            got = torch.cat([got, ranks[1]["same"][1][k]])
        assert torch.allclose(got, v, atol=WEIGHT_ATOL, rtol=0), (k, (got - v).abs().max())


@pytest.mark.slow  # 2 processes start once for all four: ~15 s on 2 cores
def test_resuming_partial_fc_equals_an_unbroken_run(pfc):
    tmp, ranks, _ = pfc
    for rank in ranks:
        resumed_from, weights = rank["resumed"]
        assert resumed_from == 1
        for k, v in rank["unbroken"][1].items():
            assert torch.equal(weights[k], v), k
    state = torch.load(tmp / "resumed" / "train" / CHECKPOINT, weights_only=True)
    full = torch.cat([ranks[0]["resumed"][1]["head.weight"], ranks[1]["resumed"][1]["head.weight"]])
    assert torch.equal(state["net"]["head.weight"], full)  # every rank's centres, gathered by rank 0
    assert any(s["momentum_buffer"].shape == (16, 32) for s in state["opt"]["state"].values())


# -- one process ------------------------------------------------------------------------------------------------------
def test_one_process_partial_fc_samples_resumes_and_exports_the_backbone(tmp_path):
    ds = make_dataset(tmp_path / "ds", identities=8, per_identity=4)
    train = {"dataset": str(ds), "batch_size": 8, "partial_fc": {"enabled": True, "sample_rate": 0.5}}
    for name in ("resumed", "unbroken"):
        tiny_config(tmp_path / name, train={**train, "out": str(tmp_path / name / "train")})
    Trainer(load_config(tmp_path / "resumed" / "params.yaml"), log=quiet).fit(stop_after=1)
    t = Trainer(load_config(tmp_path / "resumed" / "params.yaml"), log=quiet)
    assert t.fit().resumed_from == 1
    u = Trainer(load_config(tmp_path / "unbroken" / "params.yaml"), log=quiet)
    u.fit()
    assert isinstance(u.head, PartialFC) and u.head.num_sample == 4
    for k, v in u.net.state_dict().items():
        assert torch.equal(t.net.state_dict()[k], v), k
    model = u.export({})
    assert model.head is None and not (u.out / "model" / "head").exists()  # the backbone only


def test_one_process_rate_one_with_identity_and_domain_mixup_equals_the_full_head(tmp_path):
    s = make_soft_dataset(tmp_path / "s", identities=4, per_identity=4)  # soft labels (identity mixup)
    r = make_dataset(tmp_path / "r", identities=3, per_identity=4, seed=5)  # the second domain: classes 4-6
    runs = []
    for enabled in (False, True):
        train = {
            "dataset": str(s),
            "epochs": 1,
            "batch_size": 8,
            "head": {"name": "adaface"},
            "domain_mixup": {"dataset": str(r)},
            "partial_fc": {"enabled": enabled},
            "out": str(tmp_path / f"pfc{enabled}"),
        }
        t = Trainer(tiny_config(tmp_path / str(enabled), train=train), log=quiet)
        runs.append(([h.loss for h in t.fit().history], t.net.state_dict()))
    (losses, weights), (pfc_losses, pfc_weights) = runs
    assert pfc_losses == pytest.approx(losses, rel=LOSS_RTOL)
    for k, v in weights.items():
        assert torch.allclose(pfc_weights[k], v, atol=WEIGHT_ATOL, rtol=0), (k, (pfc_weights[k] - v).abs().max())


def test_partial_fc_fingerprints_only_when_enabled(tmp_path):
    from facefoundry.train.checkpoint import fingerprint

    def fp(**pfc) -> str:
        return fingerprint(tiny_config(tmp_path / str(len(pfc)) / str(pfc), train={"partial_fc": pfc}), "digest")

    assert fp() == fp(sample_rate=0.5)  # off: the full head fingerprints as before the setting existed
    assert fp(enabled=True) != fp() and fp(enabled=True) != fp(enabled=True, sample_rate=0.5)
