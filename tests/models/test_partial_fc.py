"""Partial FC in one process (no process group): the same loss and gradients as the full MarginHead at sample rate
1.0, sampled negatives with every positive kept below it, and the checkpoint's gathered rows. Several processes:
tests/train/test_partial_fc.py."""

from __future__ import annotations

import itertools

import pytest
import torch

from facefoundry.config import HeadCfg, PartialFCCfg
from facefoundry.errors import FaceFoundryError
from facefoundry.models.heads import MarginHead
from facefoundry.models.partial_fc import PartialFC, full_state, make_head, own_state, shard, sharded_names

# the loss and the logits' softmax are summed in another order (log-sum-exp by hand, not F.cross_entropy); measured
# over the five kinds, hard and soft: loss relative 1.2e-7, embedding gradients 2.4e-7 absolute, centre gradients
# (up to 190: normalised 0.01-scale centres) 2.3e-5 absolute
LOSS_RTOL = 1e-6
GRAD_RTOL, GRAD_ATOL = 1e-5, 1e-5


def test_shards_cover_every_class_once():
    for classes, world in ((10, 3), (7, 2), (4, 4), (300_000, 8)):
        blocks = [shard(classes, r, world) for r in range(world)]
        assert blocks[0][0] == 0 and sum(n for _, n in blocks) == classes
        assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(blocks))
        assert max(n for _, n in blocks) - min(n for _, n in blocks) <= 1


@pytest.mark.parametrize("kind", ["arcface", "cosface", "combined", "adaface", "softmax"])
def test_sample_rate_one_equals_the_margin_head(kind):
    torch.manual_seed(0)
    full = MarginHead(10, 8, kind, s=16.0)
    pfc = PartialFC(full, 1.0)
    assert torch.equal(pfc.weight, full.weight)  # the same initial centres
    emb = torch.randn(6, 8)
    hard = torch.randint(0, 10, (6,))
    phi = torch.rand(6, 1)
    for labels, weights in ((hard, None), (torch.stack([hard, (hard + 3) % 10], 1), torch.cat([phi, 1 - phi], 1))):
        got = []
        for head in (full, pfc):
            e = emb.clone().requires_grad_()
            loss = head(e, e.norm(dim=1, keepdim=True), labels, weights)
            loss.backward()
            got.append((loss.detach(), e.grad, head.weight.grad.clone(), head.batch_mean.clone()))
            head.weight.grad = None
        (l1, e1, w1, m1), (l2, e2, w2, m2) = got
        assert float(l2) == pytest.approx(float(l1), rel=LOSS_RTOL)
        assert torch.allclose(e2, e1, rtol=GRAD_RTOL, atol=GRAD_ATOL)
        assert torch.allclose(w2, w1, rtol=GRAD_RTOL, atol=GRAD_ATOL * 10)
        assert torch.equal(m1, m2)  # AdaFace's norm statistics, from the same norms
    assert torch.equal(pfc.predicted, full.cosines(emb).argmax(1))


def test_one_process_samples_negatives_keeps_every_positive_and_trains():
    torch.manual_seed(0)
    pfc = make_head(HeadCfg(s=16.0), PartialFCCfg(enabled=True, sample_rate=0.3), 100, 8)
    assert isinstance(pfc, PartialFC) and pfc.num_sample == 30
    emb = torch.nn.Parameter(torch.randn(12, 8))
    labels = torch.randint(0, 100, (12,))
    opt = torch.optim.SGD([emb, pfc.weight], lr=0.5)
    losses = []
    for _ in range(40):
        loss = pfc(emb, emb.norm(dim=1, keepdim=True).detach(), labels)
        assert pfc.sampled is not None and pfc.sampled.numel() == 30
        assert set(labels.tolist()) <= set(pfc.sampled.tolist())  # positives always in the softmax
        opt.zero_grad()
        loss.backward()
        unsampled = torch.ones(100, dtype=torch.bool)
        unsampled[pfc.sampled] = False
        assert float(pfc.weight.grad[unsampled].abs().max()) == 0.0  # only the sampled centres learn
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses
    pfc.eval()  # evaluation: no sampling, the whole block
    pfc(emb, emb.norm(dim=1, keepdim=True), labels)
    assert pfc.sampled is None
    # more positives than the sample: the positives alone
    few = make_head(HeadCfg(), PartialFCCfg(enabled=True, sample_rate=0.05), 100, 8)
    assert isinstance(few, PartialFC)
    few(emb, emb.norm(dim=1, keepdim=True), labels)
    assert few.sampled is not None and few.sampled.tolist() == sorted(set(labels.tolist()))


def test_disabled_is_the_margin_head_with_the_same_initial_centres():
    torch.manual_seed(0)
    full = make_head(HeadCfg(name="cosface", s=8.0), PartialFCCfg(sample_rate=0.5), 10, 8)
    torch.manual_seed(0)
    block = make_head(HeadCfg(name="cosface", s=8.0), PartialFCCfg(enabled=True), 10, 8, rank=1, world=2)
    assert type(full) is MarginHead and full.kind == "cosface" and full.s == 8.0
    assert isinstance(block, PartialFC) and (block.start, block.num_local, block.kind) == (5, 5, "cosface")
    assert torch.equal(block.weight, full.weight[5:])
    with pytest.raises(FaceFoundryError, match="3 classes cannot be shared by 4 processes"):
        PartialFC(MarginHead(3, 8), 1.0, 0, 4)


def test_checkpoint_state_round_trips_in_one_process():
    torch.manual_seed(0)
    net = torch.nn.Module()
    net.backbone = torch.nn.Linear(4, 8)
    net.head = PartialFC(MarginHead(10, 8), 0.5)
    assert sharded_names(net) == ["head.weight", "head.batch_mean", "head.batch_std"]
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(5, 4)
    emb = net.backbone(x)
    net.head(emb, emb.norm(dim=1, keepdim=True), torch.arange(5)).backward()
    opt.step()
    n, o = full_state(net, opt, net.head)
    assert torch.equal(n["head.weight"], net.head.weight)
    n2, o2 = own_state(n, o, net, opt, net.head)
    assert torch.equal(n2["head.weight"], n["head.weight"])
    assert torch.equal(o2["state"][2]["momentum_buffer"], opt.state[net.head.weight]["momentum_buffer"])
