import numpy as np
import pytest
import torch

from facefoundry.data.images import encode_image
from facefoundry.data.manifest import read_manifest
from facefoundry.errors import FaceFoundryError
from facefoundry.generators.realism.cyclegan import CycleGANTranslator, train_cyclegan
from facefoundry.generators.realism.ddim import DDIMTranslator, train_ddim
from facefoundry.generators.realism.images import load_folder, to_signed
from facefoundry.generators.realism.transform import load_translator, translate_dataset
from tests.conftest import make_dataset


def quiet(_):
    pass


def target_folder(path, n=6, size=40):
    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        (path / f"{i}.jpg").write_bytes(encode_image(rng.integers(0, 255, (size, size + 10, 3), dtype=np.uint8), "jpg"))
    return path


def test_load_folder_crops_and_resizes(tmp_path):
    imgs = load_folder(target_folder(tmp_path / "t"), 16, crop=0.8)
    assert imgs.shape == (6, 16, 16, 3) and imgs.dtype == np.uint8
    with pytest.raises(FaceFoundryError, match="realism target folder does not exist"):
        load_folder(tmp_path / "missing", 16)


def test_cyclegan_transform_keeps_labels_and_count(tmp_path):
    ds = make_dataset(tmp_path / "ds", identities=3, per_identity=3, size=16)
    a = to_signed(np.stack([np.zeros((16, 16, 3), np.uint8)] * 4))
    b = to_signed(load_folder(target_folder(tmp_path / "t"), 16))
    nets = train_cyclegan(
        a,
        b,
        steps=2,
        batch=2,
        lr=2e-4,
        lambda_cycle=10,
        lambda_identity=5,
        width=8,
        blocks=1,
        seed=0,
        device=torch.device("cpu"),
        out=tmp_path / "model",
        log=quiet,
    )
    out = translate_dataset(ds, tmp_path / "out", CycleGANTranslator(nets["generator_ab"], 0.5), 0.5, log=quiet)
    src, dst = read_manifest(ds), read_manifest(out)
    assert dst.label == src.label and dst.identity == src.identity and len(dst) == len(src)
    p = dst.row_params(4)
    assert p["method"] == "cyclegan" and p["strength"] == 0.5 and p["source_image"] == src.path[4]
    assert p["source_params"] == src.row_params(4)
    assert dst.sha256 != src.sha256
    reloaded = load_translator(tmp_path / "model", 0.5, 4)
    x = to_signed(np.zeros((1, 16, 16, 3), np.uint8))
    assert torch.allclose(reloaded(x), CycleGANTranslator(nets["generator_ab"], 0.5)(x), atol=1e-6)


def test_ddim_inversion_depth_is_strength(tmp_path):
    b = to_signed(load_folder(target_folder(tmp_path / "t"), 16))
    unet, sched = train_ddim(
        b, steps=2, batch=2, lr=1e-3, width=8, seed=0, device=torch.device("cpu"), out=tmp_path / "m", log=quiet
    )
    x = to_signed(np.full((2, 16, 16, 3), 128, np.uint8))
    assert torch.equal(DDIMTranslator(unet, sched.config, 4, 0.0)(x), x)  # strength 0: untouched
    y = DDIMTranslator(unet, sched.config, 4, 0.5)(x)
    assert y.shape == x.shape and not torch.equal(y, x) and y.abs().max() <= 1
    ds = make_dataset(tmp_path / "ds", identities=2, per_identity=2, size=16)
    out = translate_dataset(ds, tmp_path / "out", load_translator(tmp_path / "m", 0.5, 4), 0.5, log=quiet)
    assert read_manifest(out).label == read_manifest(ds).label
