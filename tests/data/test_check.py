"""File checks for every layout, the once-per-version verification before training, and `convert`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from facefoundry.data.check import check_files, verify_for_training
from facefoundry.data.hashing import dvc_dir_hash
from facefoundry.data.images import encode_image
from facefoundry.data.recordio import write_recordio
from facefoundry.data.sources import open_source
from facefoundry.errors import FaceFoundryError
from facefoundry.io import cache_dir
from facefoundry.stages.convert import run_convert
from facefoundry.stages.validate import validate_dataset
from tests.conftest import identity_image, make_dataset


def _folder(root, identities=3, per=3, modes=None):
    rng = np.random.default_rng(0)
    for label in range(identities):
        (root / f"person{label}").mkdir(parents=True)
        for k in range(per):
            im = Image.fromarray(identity_image(label, k, 32, rng))
            im = im.convert(modes.get((label, k), "RGB")) if modes else im
            im.save(root / f"person{label}" / f"{k}.png")
    return root


def test_image_folders_and_recordio_validate_like_manifests(tmp_path):
    folder = _folder(tmp_path / "folder", modes={(0, 1): "L", (2, 2): "P"})
    m = validate_dataset(folder, 32, 2)
    assert m["images"] == 9 and m["identities"] == 3 and m["non_rgb_images"] == 2
    assert m["converted_from_L"] == 1 and m["converted_from_P"] == 1
    with pytest.raises(FaceFoundryError, match=r"2 of 9 images are bad: person0/1\.png: greyscale"):
        validate_dataset(folder, 32, 2, non_rgb="reject")
    with pytest.raises(FaceFoundryError, match=r"images are bad: person0/0\.png: image is 32x32, expected 48x48"):
        validate_dataset(folder, 48, 2)

    rng = np.random.default_rng(1)
    items = [(lab, encode_image(identity_image(lab, k, 32, rng))) for lab in range(3) for k in range(3)]
    items[4] = (items[4][0], b"not an image")
    write_recordio(tmp_path / "rec", items, 32)
    with pytest.raises(FaceFoundryError, match=r"1 of 9 images are bad: train.rec#record\d+: cannot decode"):
        validate_dataset(tmp_path / "rec", 32, 2)


def test_convert_folder_and_recordio_to_a_valid_manifest(tmp_path, tiny):
    folder = _folder(tmp_path / "folder", modes={(1, 0): "P"})
    out = run_convert(tiny, folder, tmp_path / "conv")
    src = open_source(out)
    assert src.kind == "manifest" and len(src) == 9 and src.identities == ["person0", "person1", "person2"]
    assert src.manifest.meta["converted_to_rgb"] == {"P": 1}
    assert json.loads(src.manifest.params[3])["from"] == "person1/0.png"
    orig = open_source(folder)
    for i in range(9):  # pixels survive (PNG is lossless; the palette image as its RGB decoding)
        assert np.array_equal(src.load(i), orig.load(i))
    assert validate_dataset(out, 32, 2)["non_rgb_images"] == 0

    rng = np.random.default_rng(2)
    write_recordio(
        tmp_path / "rec",
        [(lab, encode_image(identity_image(lab, k, 32, rng))) for lab in range(2) for k in range(2)],
        32,
    )
    conv = open_source(run_convert(tiny, tmp_path / "rec", tmp_path / "conv_rec"))
    assert len(conv) == 4 and conv.num_classes == 2 and list(conv.labels) == [0, 0, 1, 1]
    tiny.train.non_rgb = "reject"
    with pytest.raises(FaceFoundryError, match="palette"):
        run_convert(tiny, folder, tmp_path / "conv2")
    assert not (tmp_path / "conv2").exists()


def test_training_verification_runs_once_per_dataset_version(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEFOUNDRY_CACHE", str(tmp_path / "cache"))
    ds = make_dataset(tmp_path / "ds", 3, 3)
    src = open_source(ds)
    digest = dvc_dir_hash(ds)
    assert verify_for_training(src, digest, log=lambda m: None) == {"non_rgb_images": 0}
    assert len(list(cache_dir("verified").glob("*.json"))) == 1
    victim = ds / src.manifest.path[4]
    victim.write_bytes(encode_image(np.zeros((32, 32, 3), np.uint8)))
    # same version (digest) → cached, not read again; a new version is read and refused
    assert verify_for_training(src, digest, log=lambda m: None) == {"non_rgb_images": 0}
    with pytest.raises(FaceFoundryError, match=f"1 of 9 images are bad: {src.manifest.path[4]}: sha256 differs"):
        verify_for_training(src, dvc_dir_hash(ds), log=lambda m: None)


def test_check_files_counts_every_problem(tmp_path):
    ds = make_dataset(tmp_path / "ds", 3, 3)
    src = open_source(ds)
    (ds / src.manifest.path[0]).unlink()
    (ds / src.manifest.path[1]).write_bytes(b"junk")
    res = check_files(src, 32)
    assert res.images == 9 and len(res.problems) == 2
    assert res.problems[0].endswith("listed in the dataset but missing")
    assert "sha256 differs" in res.problems[1]
