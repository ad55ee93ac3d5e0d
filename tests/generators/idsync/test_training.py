"""IDSync training: the local VAE is trained once and reused, epochs resume exactly, the folder is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facefoundry.errors import FaceFoundryError
from facefoundry.generators.idsync.model import MODEL_INDEX, load_model_folder
from facefoundry.generators.idsync.training import CHECKPOINT, train_idsync
from tests.conftest import make_dataset
from tests.generators.idsync import ID_DIM, cfg_for, make_classifier
from tests.generators.vec2face import TinyEncoder, single_thread  # noqa: F401 - autouse fixture


class Killed(Exception):
    pass


def test_killed_run_resumes_to_the_uninterrupted_weights_and_reuses_the_vae(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", identities=4, per_identity=6, size=16)  # 24 images: 3 steps/epoch
    clf = make_classifier(tmp_path / "clf", 4)
    cfg = cfg_for(tmp_path / "a", identity_weight=0.01, identity_loss="ce", classifier=str(clf))
    full = train_idsync(cfg, ds, TinyEncoder(ID_DIM), log=lambda m: None, progress=False)
    assert len(full.history) == 3 and all(h["identity"] > 0 and h["denoise"] > 0 for h in full.history)

    cfg_b = cfg_for(tmp_path / "b", identity_weight=0.01, identity_loss="ce", classifier=str(clf))

    def crash(msg: str) -> None:  # dies mid-epoch 2, after epoch 1's checkpoint
        if msg.startswith("idsync epoch 2/3 step 2"):
            raise Killed

    with pytest.raises(Killed):
        train_idsync(cfg_b, ds, TinyEncoder(ID_DIM), log=crash, progress=False)
    assert torch.load(tmp_path / "b" / "idsync" / CHECKPOINT, weights_only=False)["epoch"] == 1
    logs: list[str] = []
    resumed = train_idsync(cfg_b, ds, TinyEncoder(ID_DIM), log=logs.append, progress=False)
    assert resumed.resumed_from == 1 and any("VAE: reusing" in m for m in logs)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    a, b = load_model_folder(full.model_dir), load_model_folder(resumed.model_dir)
    for k, v in a.unet.state_dict().items():
        assert torch.equal(v, b.unet.state_dict()[k]), k
    for k, v in a.text_encoder.state_dict().items():
        assert torch.equal(v, b.text_encoder.state_dict()[k]), k
    assert (full.model_dir / MODEL_INDEX).is_file() and a.info["identity_loss"] == "ce"


def test_cosine_variant_trains_on_unlabelled_photos_and_ce_refuses_them(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", identities=16, per_identity=1, size=16)  # each photo its own identity
    with pytest.raises(FaceFoundryError, match="no identity labels"):
        train_idsync(
            cfg_for(tmp_path, identity_loss="ce", classifier=str(make_classifier(tmp_path / "c", 16)), epochs=1),
            ds,
            TinyEncoder(ID_DIM),
            log=lambda m: None,
            progress=False,
        )
    res = train_idsync(
        cfg_for(tmp_path, identity_loss="cosine", identity_batch=2, epochs=1),
        ds,
        TinyEncoder(ID_DIM),
        log=lambda m: None,
        progress=False,
    )
    assert res.history[0]["identity"] > 0 and load_model_folder(res.model_dir).info["identity_loss"] == "cosine"


def test_identity_vectors_wider_than_the_text_encoder_are_refused(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", identities=4, per_identity=4, size=16)
    with pytest.raises(FaceFoundryError, match="128-d but the text encoder is 32 wide"):
        train_idsync(
            cfg_for(tmp_path, identity_weight=0, epochs=1), ds, TinyEncoder(128), log=lambda m: None, progress=False
        )


def test_sface_is_an_identity_space_for_idsync(tmp_path: Path) -> None:
    """``idsync.encoder: sface``: SFace's vectors condition the UNet and its torch port drives the cosine identity
    loss; the model index records it (so the datasets it makes are judged by dlib)."""
    from facefoundry.identity import load_encoder
    from facefoundry.quality.judging import teachers

    ds = make_dataset(tmp_path / "ds", identities=8, per_identity=1, size=16)
    cfg = cfg_for(tmp_path, identity_loss="cosine", identity_batch=2, epochs=1, text_width=128, encoder="sface")
    res = train_idsync(cfg, ds, load_encoder("sface"), log=lambda m: None, progress=False)
    info = load_model_folder(res.model_dir).info
    assert res.history[0]["identity"] > 0 and info["encoder_name"] == "sface"
    made = {"generator": "idsync", "model": str(res.model_dir), "encoder": info.get("encoder")}  # as generate writes
    assert teachers(made) == ["sface"]
    named = {"generator": "idsync", "model": str(res.model_dir)}  # an older manifest: the model's index says
    assert teachers(named, index=lambda m: info if str(m) == str(res.model_dir) else None) == ["sface"]
