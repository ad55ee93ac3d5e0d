"""Encoder back-ends behind one interface: platform model folder, arcface_torch .pth, ONNX; the judge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facefoundry.data.transforms import Preprocess
from facefoundry.errors import FaceFoundryError
from facefoundry.identity import load_encoder
from facefoundry.identity.encoders import OnnxEncoder, TorchFREncoder
from facefoundry.identity.judge import consistency_metrics, identity_similarities, sample_balanced
from facefoundry.models.bundle import FRModel, export_onnx
from facefoundry.models.iresnet import IResNet


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.manual_seed(0)
    net = IResNet([1, 1, 1, 1], 8, 32, 32).eval()
    for m in net.modules():  # non-trivial BN statistics, so a wrong layout would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    folder = tmp_path_factory.mktemp("model")
    FRModel(net, Preprocess(image_size=32), {}).save(folder)
    export_onnx(net, folder / "backbone.onnx", 32)
    return folder, net


def images(n: int = 6, size: int = 48) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_platform_model_folder_onnx_and_pth_give_the_same_vectors(bundle, tmp_path):
    folder, net = bundle
    torch.save(net.state_dict(), tmp_path / "backbone.pth")
    ref = load_encoder(str(folder))
    assert isinstance(ref, TorchFREncoder) and ref.dim == 32 and ref.input.size == 32
    onnx_enc = load_encoder(str(folder / "backbone.onnx"))
    assert isinstance(onnx_enc, OnnxEncoder) and not onnx_enc.differentiable
    x = images()  # 48-px crops: every encoder resizes to its own input side
    a, b = ref.embed(x), onnx_enc.embed(x)
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert np.abs(a - b).max() < 1e-4
    # an arcface_torch state dict: the architecture is read from its keys (input side from fc)
    pth = TorchFREncoder.from_arcface_torch(tmp_path / "backbone.pth")
    assert pth.backbone.config["layers"] == [1, 1, 1, 1] and pth.backbone.config["width"] == 8


def test_torch_encoder_is_differentiable(bundle):
    enc = load_encoder(str(bundle[0]))
    x = torch.rand(2, 3, 40, 40, requires_grad=True)
    enc(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_encoder_specs_are_one_line_errors(tmp_path):
    with pytest.raises(FaceFoundryError, match=r"neither a registered name.*dlib"):
        load_encoder("arcface-from-the-internet")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(FaceFoundryError, match="unknown identity-encoder format"):
        load_encoder(str(tmp_path / "x.txt"))
    (tmp_path / "bad.pth").write_bytes(b"\x80\x04not a zip")
    with pytest.raises(
        FaceFoundryError, match=r"bad\.pth: (holds objects other than tensors|not a readable PyTorch weights file)"
    ):
        load_encoder(str(tmp_path / "bad.pth"))
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(FaceFoundryError, match="not an arcface_torch IResNet"):
        load_encoder(str(tmp_path / "other.pth"))
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(FaceFoundryError, match=r"bad\.onnx: not a readable ONNX model"):
        load_encoder(str(tmp_path / "bad.onnx"))


def test_judge_separates_intra_from_inter_identity_similarity():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16))
    labels = np.repeat(np.arange(20), 5)
    emb = centres[labels] + 0.3 * rng.normal(size=(100, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    intra, inter = identity_similarities(emb, labels)
    assert len(intra) == 20 * 10 and len(inter) == 100 * 99 // 2 - 200
    m = consistency_metrics(intra, inter)
    assert m["intra_mean"] > 0.8 > 0.3 > abs(m["inter_mean"]) and m["d_prime"] > 3
    pick = sample_balanced(labels, 30, rng)
    assert len(pick) == 30 and np.all(np.bincount(labels[pick])[np.unique(labels[pick])] >= 2)
