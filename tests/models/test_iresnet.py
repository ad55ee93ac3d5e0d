import pytest
import torch

from facefoundry.errors import FaceFoundryError
from facefoundry.models.iresnet import IResNet, build_backbone


def insightface_r18_keys() -> set[str]:
    """The state-dict keys of insightface arcface_torch's iresnet18 (written out from its layout)."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"conv1.weight", "prelu.weight", "fc.weight", "fc.bias"} | {f"bn1.{s}" for s in bn}
    keys |= {f"bn2.{s}" for s in bn} | {f"features.{s}" for s in bn}
    for layer in range(1, 5):
        for block in range(2):
            p = f"layer{layer}.{block}."
            keys |= {p + "conv1.weight", p + "conv2.weight", p + "prelu.weight"}
            keys |= {f"{p}{b}.{s}" for b in ("bn1", "bn2", "bn3") for s in bn}
        keys |= {f"layer{layer}.0.downsample.0.weight"} | {f"layer{layer}.0.downsample.1.{s}" for s in bn}
    return keys


def test_r18_state_dict_matches_insightface_names_and_shapes():
    m = build_backbone("r18", 112)
    sd = m.state_dict()
    assert set(sd) == insightface_r18_keys()
    assert sd["fc.weight"].shape == (512, 512 * 7 * 7)
    assert sd["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert not m.features.weight.requires_grad  # insightface freezes it at 1


def test_forward_returns_unit_embedding_and_norm():
    m = build_backbone("iresnet", 56, embedding_size=32, width=8, layers=[1, 1, 1, 1]).eval()
    x = torch.randn(3, 3, 56, 56)
    emb, norm = m(x)
    assert emb.shape == (3, 32) and norm.shape == (3, 1)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(emb * norm, m.embed_raw(x), atol=1e-5)  # AdaFace's (embedding, norm) contract


def test_se_variant_adds_se_modules():
    m = build_backbone("r18_se", 112)
    assert any(k.endswith("se.fc1.weight") for k in m.state_dict())


def test_unknown_backbone_lists_choices():
    with pytest.raises(FaceFoundryError, match=r"unknown backbone 'r999'; choose one of: .*r18.*r50"):
        build_backbone("r999", 112)


def test_save_pretrained_roundtrip(tmp_path):
    m = build_backbone("iresnet", 32, embedding_size=16, width=8, layers=[1, 2, 1, 1]).eval()
    m.save_pretrained(tmp_path)
    assert (tmp_path / "backbone.pth").is_file()
    m2 = IResNet.from_pretrained(tmp_path).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(m(x)[0], m2(x)[0]) and m2.config["layers"] == [1, 2, 1, 1]
