"""Knowledge distillation as a training regime: the loss, the teacher's cached flip-summed vectors, and a student
that trains, resumes and exports like the label regime."""

import numpy as np
import pytest
import torch

from facefoundry.data.sources import open_source
from facefoundry.errors import FaceFoundryError
from facefoundry.identity.encoders import PixelEncoder
from facefoundry.models.bundle import FRModel
from facefoundry.train.distill import FlipSummed, distill_loss, regime, teacher_vectors
from facefoundry.train.trainer import CHECKPOINT, Trainer
from tests.conftest import make_dataset, tiny_config


def quiet(_msg):
    pass


def test_losses_on_unit_vectors():
    torch.manual_seed(0)
    s = torch.randn(8, 16, requires_grad=True)
    t = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    mse, cos = distill_loss(s, t, "mse"), distill_loss(s, t, "cosine")
    assert float(mse.detach()) == pytest.approx(
        2 * float(cos.detach()), rel=1e-5
    )  # ‖a − b‖² = 2 − 2·cos on unit vectors
    mse.backward()
    assert s.grad is not None and float(s.grad.abs().sum()) > 0
    assert float(distill_loss(t * 3.0, t, "mse")) == pytest.approx(0.0, abs=1e-6)  # the student's norm is free
    with pytest.raises(FaceFoundryError, match="not one of"):
        distill_loss(s, t, "kl")


def test_flip_summed_vectors_ignore_the_mirror():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((3, 3, 24, 24)).astype(np.float32))
    enc = FlipSummed(PixelEncoder(8))
    a, b = enc(x), enc(x.flip(-1))
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(PixelEncoder(8)(x), PixelEncoder(8)(x.flip(-1)), atol=1e-3)  # the inner one does not
    assert enc.spec()["flip_summed"] is True and enc.spec()["name"] == "pixels"


class CountingPixels(PixelEncoder):
    calls = 0

    def forward(self, images):
        CountingPixels.calls += len(images)
        return super().forward(images)


def test_teacher_vectors_are_computed_once_per_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEFOUNDRY_CACHE", str(tmp_path / "cache"))
    src = open_source(make_dataset(tmp_path / "ds", identities=3, per_identity=4))
    first = teacher_vectors(src, CountingPixels(8), 4, desc="")
    assert CountingPixels.calls > 0
    CountingPixels.calls = 0
    again = teacher_vectors(src, CountingPixels(8), 4, desc="")
    assert CountingPixels.calls == 0  # read from the identity-vector store
    np.testing.assert_array_equal(first, again)
    assert np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)


def test_under_ddp_each_rank_embeds_its_share_then_reads_all(tmp_path, monkeypatch):
    """Rank 1 of 2 embeds rows 1, 3, 5, … into the store and waits; what rank 0 embedded is then read, not computed."""
    import torch.distributed as dist

    from facefoundry.identity.store import embed_rows, source_keys
    from facefoundry.train import distill, distributed

    monkeypatch.setenv("FACEFOUNDRY_CACHE", str(tmp_path / "cache"))
    src = open_source(make_dataset(tmp_path / "ds", identities=3, per_identity=4))
    rows = np.arange(0, len(src), 2)  # rank 0's share, stored
    embed_rows(src.load, rows, FlipSummed(CountingPixels(8)), 4, "", source_keys(src, rows))
    waits = []
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed, "barrier", lambda: waits.append(CountingPixels.calls))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    CountingPixels.calls = 0
    distill.embed_share(src, CountingPixels(8), 4, desc="")
    assert waits == [16]  # its half: 6 images padded to 8 (full batches of 4), each and its mirror
    monkeypatch.setattr(distributed, "active", lambda: False)
    CountingPixels.calls = 0
    teacher_vectors(src, CountingPixels(8), 4, desc="")
    assert CountingPixels.calls == 0  # every vector from the store


def _distill(tmp, ds, out, objective="distill", **train):
    return tiny_config(
        tmp,
        train={
            "dataset": str(ds),
            "out": str(out),
            "epochs": 3,
            "objective": objective,
            "teacher": "pixels",
            "export_onnx": True,
            **train,
        },
    )


def _agreement(backbone, preprocess, imgs, teacher) -> float:
    """Mean cosine of a backbone's (eval-mode) embeddings and the teacher's vectors of the same images."""
    student = backbone.eval().embed_raw(preprocess(torch.from_numpy(imgs))).detach()
    return float((torch.nn.functional.normalize(student, dim=1) * teacher).sum(1).mean())


def test_distilled_student_learns_the_teacher_and_exports(tmp_path):
    ds = make_dataset(tmp_path / "ds", identities=6, per_identity=6)
    tr = Trainer(_distill(tmp_path, ds, tmp_path / "t", epochs=8, lr=0.1), log=quiet)
    assert tr.head is None and tr.regime == "distill:pixels"
    assert tr.backbone.config["embedding_size"] == PixelEncoder().dim  # the student speaks the teacher's space
    src = open_source(ds)
    imgs = np.stack([src.load(i) for i in range(len(src))])
    teacher = torch.from_numpy(teacher_vectors(src, PixelEncoder(), 64, desc=""))
    before = _agreement(tr.backbone, tr.preprocess, imgs, teacher)
    hist = tr.fit().history
    assert hist[-1].teacher_cosine > hist[0].teacher_cosine + 0.1
    assert hist[-1].loss < hist[0].loss and np.isnan(hist[-1].accuracy)  # no labels: no train accuracy
    tr.export({})
    back = FRModel.load(tmp_path / "t" / "model")
    assert back.info["regime"] == "distill:pixels" and back.info["distill"]["teacher"] == "pixels"
    assert back.info["num_classes"] == 6 and (tmp_path / "t" / "model" / "backbone.onnx").is_file()
    # the exported student's embeddings of its training images moved towards the teacher's
    assert _agreement(back.backbone, back.preprocess, imgs, teacher) > before + 0.05


def test_distillation_resumes_identically(tmp_path):
    ds = make_dataset(tmp_path / "ds", identities=4, per_identity=6)
    full = Trainer(_distill(tmp_path / "a", ds, tmp_path / "a" / "t", objective="both"), log=quiet)
    full.fit()
    first = Trainer(_distill(tmp_path / "b", ds, tmp_path / "b" / "t", objective="both"), log=quiet)
    first.fit(stop_after=1)
    assert (tmp_path / "b" / "t" / CHECKPOINT).is_file()
    again = Trainer(_distill(tmp_path / "b", ds, tmp_path / "b" / "t", objective="both"), log=quiet)
    result = again.fit()
    assert again.head is not None and result.resumed_from == 1 and len(result.history) == 3
    for (k, v1), v2 in zip(full.net.state_dict().items(), again.net.state_dict().values()):
        assert torch.equal(v1, v2), k


def test_fingerprint_says_what_the_student_learns_from(tmp_path):
    ds = make_dataset(tmp_path / "ds", identities=3, per_identity=4)
    base = {"dataset": str(ds), "batch_size": 4}
    labels = Trainer(tiny_config(tmp_path, train=base), log=quiet).fingerprint
    # under the labels regime the teacher settings are not used: the same fingerprint as before they existed
    other = {**base, "teacher": "sface", "distill": {"loss": "cosine"}}
    assert Trainer(tiny_config(tmp_path, train=other), log=quiet).fingerprint == labels
    distill = Trainer(
        tiny_config(tmp_path, train={**base, "objective": "distill", "teacher": "pixels"}), log=quiet
    ).fingerprint
    both = Trainer(tiny_config(tmp_path, train={**base, "objective": "both", "teacher": "pixels"}), log=quiet)
    assert len({labels, distill, both.fingerprint}) == 3


def test_distillation_refuses_what_has_no_teacher_vectors(tmp_path):
    ds = make_dataset(tmp_path / "ds", identities=3, per_identity=4)
    cfg = tiny_config(
        tmp_path,
        train={"dataset": str(ds), "batch_size": 4, "objective": "distill", "domain_mixup": {"dataset": str(ds)}},
    )
    with pytest.raises(FaceFoundryError, match="domain_mixup"):
        Trainer(cfg, log=quiet)
    cfg = tiny_config(tmp_path, train={"dataset": str(ds), "batch_size": 4, "objective": "both", "teacher": "nope"})
    with pytest.raises(FaceFoundryError, match="nope"):
        Trainer(cfg, log=quiet)


def test_regime_names():
    assert regime("labels", "dlib") == "labels"
    assert regime("distill", "sface") == "distill:sface"
    assert regime("both", "/models/teacher.onnx") == "both:teacher"


def test_centred_targets_keep_what_tells_images_apart():
    from facefoundry.train.distill import centre

    rng = np.random.default_rng(0)
    shared = rng.normal(size=16)
    raw = shared * 3 + rng.normal(size=(50, 16)) * 0.5  # dlib-like: a large shared component
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    assert float((raw @ raw.T).mean()) > 0.8
    c = centre(raw)
    assert (
        np.allclose(np.linalg.norm(c, axis=1), 1, atol=1e-5)
        and abs(float((c @ c.T)[np.triu_indices(50, 1)].mean())) < 0.1
    )
