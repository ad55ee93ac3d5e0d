import numpy as np
import pytest
import torch

from facefoundry.data.sources import open_source
from facefoundry.errors import FaceFoundryError
from facefoundry.models.bundle import FRModel
from facefoundry.train.schedule import lr_at
from facefoundry.train.trainer import CHECKPOINT, Trainer
from facefoundry.verification.protocol import embed, evaluate_pairs
from tests.conftest import identity_image, make_dataset, tiny_config


def quiet(_msg):
    pass


def test_schedule_warmup_cosine_step():
    assert lr_at(0, 100, 0.1, 10, "cosine") == pytest.approx(0.01)
    assert lr_at(9, 100, 0.1, 10, "cosine") == pytest.approx(0.1)
    assert lr_at(10, 100, 0.1, 10, "cosine") == pytest.approx(0.1)
    assert lr_at(100, 100, 0.1, 10, "cosine") == pytest.approx(0.0)
    assert lr_at(55, 100, 0.1, 10, "cosine") == pytest.approx(0.05)
    assert lr_at(50, 100, 0.1, 0, "step", [40, 60]) == pytest.approx(0.01)


def test_learns_identities_and_exports(tmp_path):
    ds = make_dataset(tmp_path / "ds", identities=10, per_identity=8)
    cfg = tiny_config(tmp_path, train={"dataset": str(ds), "epochs": 8, "export_onnx": True})
    tr = Trainer(cfg, log=quiet)
    result = tr.fit()
    assert result.history[-1].loss < result.history[0].loss
    model = tr.export({"note": "test"})
    # verification on unseen images of unseen identities: the embedding must separate them
    rng = np.random.default_rng(5)
    imgs, same = [], []
    for i in range(40):
        a = 100 + i
        b = a if i % 2 == 0 else a + 1
        imgs += [identity_image(a, 0, 32, rng), identity_image(b, 1, 32, rng)]
        same.append(a == b)
    back = FRModel.load(tmp_path / "train" / "model")
    emb = embed(back.backbone.eval().embed_raw, np.stack(imgs), back.preprocess)
    res = evaluate_pairs("toy", emb, np.array(same), nfolds=10)
    assert res.accuracy > 0.8
    assert back.info["num_classes"] == 10 and back.preprocess.image_size == 32
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "train" / "model" / "backbone.onnx"))
    x = back.preprocess(torch.from_numpy(np.stack(imgs[:4])))
    onnx_out = sess.run(None, {"input": x.numpy()})[0]
    assert np.allclose(onnx_out, model.backbone.eval().embed_raw(x).detach().numpy(), atol=1e-4)


def test_resume_continues_identically(tmp_path):
    ds = make_dataset(tmp_path / "ds", identities=6, per_identity=6)
    straight = tiny_config(tmp_path / "a", train={"dataset": str(ds), "epochs": 3, "out": str(tmp_path / "a" / "t")})
    resumed = tiny_config(
        tmp_path / "b",
        train={"dataset": str(ds), "epochs": 3, "out": str(tmp_path / "b" / "t"), "backbone": {"dropout": 0.0}},
    )
    full = Trainer(straight, log=quiet)
    full.fit()
    first = Trainer(resumed, log=quiet)
    first.fit(stop_after=1)  # "killed" after epoch 1
    assert (tmp_path / "b" / "t" / CHECKPOINT).is_file()
    again = Trainer(resumed, log=quiet)
    result = again.fit()
    assert result.resumed_from == 1 and len(result.history) == 3
    for (k, v1), v2 in zip(full.net.state_dict().items(), again.net.state_dict().values()):
        assert torch.equal(v1, v2), k


def test_changed_settings_do_not_resume(tmp_path):
    ds = make_dataset(tmp_path / "ds", identities=4, per_identity=4)
    Trainer(tiny_config(tmp_path, train={"dataset": str(ds), "epochs": 2, "batch_size": 8}), log=quiet).fit(
        stop_after=1
    )
    t = Trainer(tiny_config(tmp_path, train={"dataset": str(ds), "epochs": 2, "batch_size": 8, "lr": 0.01}), log=quiet)
    assert t.fit().resumed_from == 0


def test_soft_label_mixer_plugs_in(tmp_path):
    ds = make_dataset(tmp_path / "ds", identities=4, per_identity=4)
    calls = []

    def mixup(x, labels):
        calls.append(1)
        perm = torch.arange(len(labels)).flip(0)
        lam = 0.7
        return (
            lam * x + (1 - lam) * x[perm],
            torch.stack([labels, labels[perm]], 1),
            torch.tensor([[lam, 1 - lam]]).expand(len(labels), 2),
        )

    t = Trainer(tiny_config(tmp_path, train={"dataset": str(ds), "epochs": 1, "batch_size": 8}), mixer=mixup, log=quiet)
    assert np.isfinite(t.fit().history[0].loss) and calls


def test_bad_inputs(tmp_path):
    ds = make_dataset(tmp_path / "ds", identities=4, per_identity=4)
    with pytest.raises(FaceFoundryError, match="unknown backbone 'nope'"):
        Trainer(tiny_config(tmp_path, train={"dataset": str(ds), "backbone": {"name": "nope"}}), log=quiet)
    with pytest.raises(FaceFoundryError, match=r"images are 32x32 but base\.image_size is 48"):
        Trainer(tiny_config(tmp_path, base={"image_size": 48}, train={"dataset": str(ds)}), log=quiet)
    with pytest.raises(
        FaceFoundryError, match=r"has 4 image\(s\); at least 5 are needed \(train.min_images_per_identity"
    ):
        Trainer(tiny_config(tmp_path, train={"dataset": str(ds), "min_images_per_identity": 5}), log=quiet)
    with pytest.raises(FaceFoundryError, match="fewer than one batch"):
        Trainer(tiny_config(tmp_path, train={"dataset": str(ds), "batch_size": 64}), log=quiet)


def test_streaming_feeder_matches_preloaded_order(tmp_path):
    ds = make_dataset(tmp_path / "ds", identities=4, per_identity=4)
    from facefoundry.train.feed import Feeder

    src = open_source(ds)
    pre = list(Feeder(src, 32, 4, preload_max_mb=100).epoch(3))
    stream = list(Feeder(src, 32, 4, preload_max_mb=0).epoch(3))
    assert len(pre) == len(stream) == 4
    for (a, la), (b, lb) in zip(pre, stream):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_no_real_photo_enters_fr_training_under_any_regime(tmp_path):
    from facefoundry.data.writer import DatasetWriter
    from tests.conftest import identity_image

    rng = np.random.default_rng(0)
    photos = tmp_path / "real_aligned"
    with DatasetWriter(photos, {"generator": "align", "num_classes": 4, "image_size": 32}) as w:
        for label in range(4):
            for k in range(4):
                w.add(identity_image(label, k, 32, rng), label, f"photo_{label}", "align", {})
    synthetic = make_dataset(tmp_path / "ds", identities=4, per_identity=4)
    for objective in ("labels", "distill"):
        cfg = tiny_config(tmp_path, train={"dataset": str(photos), "batch_size": 4, "objective": objective})
        with pytest.raises(FaceFoundryError, match=r"train.dataset .*aligned real photos"):
            Trainer(cfg, log=quiet)
    mixed = tiny_config(
        tmp_path, train={"dataset": str(synthetic), "batch_size": 4, "domain_mixup": {"dataset": str(photos)}}
    )
    with pytest.raises(FaceFoundryError, match=r"train.domain_mixup.dataset .*aligned real photos"):
        Trainer(mixed, log=quiet)
