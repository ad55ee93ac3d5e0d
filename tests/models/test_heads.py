import math

import pytest
import torch
import torch.nn.functional as F

from facefoundry.errors import FaceFoundryError
from facefoundry.models.heads import MarginHead
from facefoundry.models.margins import adaface_margin, combined_margin


def head_and_batch(kind, **kw):
    torch.manual_seed(0)
    h = MarginHead(5, 8, kind, s=10.0, **kw)
    emb = F.normalize(torch.randn(4, 8), dim=1)
    labels = torch.tensor([0, 3, 1, 4])
    cos = F.linear(emb, F.normalize(h.weight, dim=1))
    return h, emb, labels, cos


@pytest.mark.parametrize(
    "kind,angle,formula",
    [
        ("arcface", lambda th: th + 0.5, lambda th: math.cos(th + 0.5)),
        ("cosface", lambda th: th, lambda th: math.cos(th) - 0.4),
        ("sphereface", lambda th: 1.7 * th, lambda th: math.cos(1.7 * th)),
    ],
)
def test_margin_logits_follow_formula(kind, angle, formula):
    h, emb, labels, cos = head_and_batch(kind)
    cos = cos.detach()
    logits = h.logits(emb, emb.norm(dim=1, keepdim=True), labels).detach()
    checked = 0
    for i, y in enumerate(labels.tolist()):
        th = math.acos(float(cos[i, y]))
        if angle(th) <= math.pi:  # past π the monotonic fallback applies (tested below)
            assert float(logits[i, y]) == pytest.approx(10 * formula(th), abs=1e-4)
            checked += 1
        others = [c for c in range(5) if c != y]
        assert torch.allclose(logits[i, others], 10 * cos[i, others], atol=1e-5)
    assert checked >= 2


def test_arcface_falls_back_past_pi():
    t = torch.tensor([-0.99])  # θ ≈ 3.0, θ + 0.5 > π
    got = combined_margin(t, 1.0, 0.5, 0.0)
    assert float(got) == pytest.approx(-0.99 - 0.5 * math.sin(0.5), abs=1e-6)


def test_adaface_formula():
    target = torch.tensor([0.5, 0.5])
    norms = torch.tensor([[30.0], [10.0]])
    mean, std, m, h = torch.tensor(20.0), torch.tensor(10.0), 0.4, 0.333
    got = adaface_margin(target, norms, mean, std, m, h)
    for i, n in enumerate([30.0, 10.0]):
        g = max(-1, min(1, (n - 20) / (10 + 1e-3) * h))
        want = math.cos(math.acos(0.5) - m * g) - (m + m * g)
        assert float(got[i]) == pytest.approx(want, abs=1e-5)


def test_soft_labels_mix_the_margin_logits_as_synface_does():
    h, emb, labels, _ = head_and_batch("arcface")
    other = torch.tensor([2, 2, 0, 1])
    norms = torch.ones(4, 1)
    w = torch.tensor([0.7, 0.5, 1.0, 0.2])
    soft = h(emb, norms, torch.stack([labels, other], 1), torch.stack([w, 1 - w], 1)).detach()
    z = (w[:, None] * h.logits(emb, norms, labels) + (1 - w[:, None]) * h.logits(emb, norms, other)).detach()
    ce = lambda y: F.cross_entropy(z, y, reduction="none")  # noqa: E731
    assert float(soft) == pytest.approx(float((w * ce(labels)).mean() + ((1 - w) * ce(other)).mean()), rel=1e-5)
    hard = F.cross_entropy(h.logits(emb, norms, labels), labels).detach()
    assert float(h(emb, norms, labels).detach()) == pytest.approx(float(hard), rel=1e-5)


def test_adaface_updates_norm_statistics_in_training_only():
    h, emb, labels, _ = head_and_batch("adaface")
    before = float(h.batch_mean)
    h.eval()
    h(emb, torch.full((4, 1), 50.0), labels)
    assert float(h.batch_mean) == before
    h.train()
    h(emb, torch.full((4, 1), 50.0), labels)
    assert float(h.batch_mean) == pytest.approx(0.99 * before + 0.01 * 50.0)


def test_unknown_head():
    with pytest.raises(FaceFoundryError, match="unknown head 'bogus'"):
        MarginHead(3, 4, "bogus")


def test_soft_label_cross_entropy_matches_a_hand_computed_value():
    """Two classes at known angles, s = 2, CosFace m = 0.5, φ = 0.7: the logits with the margin on the label and
    on the partner are mixed 0.7 / 0.3 (SynFace's official form), then loss = φ·CE(z, label) + (1 − φ)·CE(z, partner)."""
    h = MarginHead(2, 2, "cosface", s=2.0, m3=0.5)
    with torch.no_grad():
        h.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    emb = torch.tensor([[0.6, 0.8]])  # cos to class 0: 0.6, to class 1: 0.8
    phi = 0.7
    # margin on label 0: (2·(0.6−0.5), 2·0.8) = (0.2, 1.6); on label 1: (2·0.6, 2·(0.8−0.5)) = (1.2, 0.6)
    # mixed: 0.7·(0.2, 1.6) + 0.3·(1.2, 0.6) = (0.5, 1.3)
    ce0 = math.log(1 + math.exp(1.3 - 0.5))  # −log softmax(z)[0] = 1.17108
    ce1 = math.log(1 + math.exp(0.5 - 1.3))  # −log softmax(z)[1] = 0.37110
    hand = phi * ce0 + (1 - phi) * ce1  # = 0.7·1.17108 + 0.3·0.37110 = 0.93109
    loss = h(emb, emb.norm(dim=1), torch.tensor([[0, 1]]), torch.tensor([[phi, 1 - phi]]))
    assert float(loss.detach()) == pytest.approx(hand, abs=1e-6) and hand == pytest.approx(0.93109, abs=1e-4)
    # weight 1 on the own label and 0 on a partner is the hard-label loss, exactly
    hard = h(emb, emb.norm(dim=1), torch.tensor([0]))
    assert torch.equal(h(emb, emb.norm(dim=1), torch.tensor([[0, 1]]), torch.tensor([[1.0, 0.0]])), hard)
