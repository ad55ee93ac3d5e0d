"""SynFace in the trainer: soft labels manifest → loader → loss, and domain mixup's label ranges."""

import numpy as np
import pytest
import torch

from facefoundry.data.sources import open_source
from facefoundry.errors import FaceFoundryError
from facefoundry.train.feed import Feeder
from facefoundry.train.mixup import combine, source_targets
from facefoundry.train.trainer import Trainer
from tests.conftest import make_dataset, make_soft_dataset, tiny_config


def quiet(_msg):
    pass


def weights_of(trainer):
    return {k: v.clone() for k, v in trainer.net.state_dict().items()}


def test_soft_labels_follow_each_image_from_manifest_to_loss(tmp_path):
    src = open_source(make_soft_dataset(tmp_path / "soft"))
    feeder = Feeder(src, 32, 8, preload_max_mb=0)  # the streaming loader path
    for _images, labels, idx in feeder.epoch(3, indices=True):
        targets, weights = source_targets(src, labels, idx)
        for r, i in enumerate(idx.tolist()):
            own, partner, phi = int(src.labels[i]), int(src.mix_labels[i]), float(src.mix_weights[i])
            assert int(labels[r]) == own and int(targets[r, 0]) == own
            if partner >= 0:
                assert int(targets[r, 1]) == partner and weights[r].tolist() == pytest.approx([phi, 1 - phi])
            else:
                assert weights[r].tolist() == [1.0, 0.0]
    # the trainer feeds exactly these targets to the head
    seen = []
    t = Trainer(tiny_config(tmp_path, train={"dataset": str(src.root), "epochs": 1, "batch_size": 12}), log=quiet)
    forward = t.ddp.forward

    def spy(x, targets, weights, amp, teacher=None):
        seen.append((targets.clone(), None if weights is None else weights.clone()))
        return forward(x, targets, weights, amp, teacher)

    t.ddp.forward = spy
    t.fit()
    assert seen and all(tg.shape[1] == 2 and w is not None for tg, w in seen)
    assert any(bool(((w > 0) & (w < 1)).any()) for _, w in seen) and all(
        torch.allclose(w.sum(1), torch.ones(len(w))) for _, w in seen
    )


def test_domain_mixup_gives_the_second_dataset_its_own_label_range(tmp_path):
    s = make_dataset(tmp_path / "s", identities=5, per_identity=4)
    r = make_soft_dataset(tmp_path / "r", identities=3, per_identity=6, seed=4)
    cfg = tiny_config(
        tmp_path,
        train={"dataset": str(s), "epochs": 1, "batch_size": 8, "domain_mixup": {"dataset": str(r), "psi": [0.25]}},
    )
    t = Trainer(cfg, log=quiet)
    assert t.head.weight.shape[0] == 8  # 5 + 3 classes
    images, targets, weights = t.domain.next_batch(t.device)
    assert targets.min() >= 5 and targets.max() <= 7 and images.shape[0] == 8
    t_s, w_s = torch.tensor([0, 4]), None
    tg, w = combine(t_s, w_s, targets[:2], weights[:2], 0.25)
    assert tg.shape == (2, 3) and torch.allclose(w.sum(1), torch.ones(2))
    assert w[:, 0].tolist() == [0.25, 0.25]
    hist = t.fit().history
    assert np.isfinite(hist[0].loss)
    info = t.export({}).info
    assert info["num_classes"] == 8 and info["domain_mixup"]["label_offset"] == 5
    assert info["domain_mixup"]["classes"] == 3


@pytest.mark.parametrize("head", ["arcface", "adaface", "combined"])
def test_domain_mixup_works_with_every_margin_head(tmp_path, head):
    s = make_dataset(tmp_path / "s", identities=4, per_identity=4)
    r = make_dataset(tmp_path / "r", identities=3, per_identity=4, seed=5)
    cfg = tiny_config(
        tmp_path,
        train={
            "dataset": str(s),
            "epochs": 1,
            "batch_size": 8,
            "head": {"name": head},
            "domain_mixup": {"dataset": str(r)},
        },
    )
    assert np.isfinite(Trainer(cfg, log=quiet).fit().history[0].loss)


def test_psi_one_is_training_without_mixup_bit_for_bit(tmp_path):
    s = make_dataset(tmp_path / "s", identities=4, per_identity=4)
    r = make_dataset(tmp_path / "r", identities=3, per_identity=4, seed=5)
    plain = Trainer(tiny_config(tmp_path / "a", train={"dataset": str(s), "epochs": 2, "batch_size": 8}), log=quiet)
    plain.fit()
    logs = []
    one = Trainer(
        tiny_config(
            tmp_path / "b",
            train={"dataset": str(s), "epochs": 2, "batch_size": 8, "domain_mixup": {"dataset": str(r), "psi": [1.0]}},
        ),
        log=logs.append,
    )
    one.fit()
    a, b = weights_of(plain), weights_of(one)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert plain.fingerprint == one.fingerprint and any("ψ = 1" in line for line in logs)


def test_domain_mixup_checks_the_second_dataset(tmp_path):
    s = make_dataset(tmp_path / "s", identities=4, per_identity=4)
    r = make_dataset(tmp_path / "r", identities=3, per_identity=4, size=48)
    with pytest.raises(FaceFoundryError, match=r"train.domain_mixup.dataset .*48x48 but base.image_size is 32"):
        Trainer(
            tiny_config(tmp_path, train={"dataset": str(s), "batch_size": 8, "domain_mixup": {"dataset": str(r)}}),
            log=quiet,
        )
    with pytest.raises(FaceFoundryError, match="does not exist"):
        Trainer(
            tiny_config(
                tmp_path,
                train={"dataset": str(s), "batch_size": 8, "domain_mixup": {"dataset": str(tmp_path / "nope")}},
            ),
            log=quiet,
        )
