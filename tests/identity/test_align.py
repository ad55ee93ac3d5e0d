"""``facefoundry align``: real photos → template-aligned crops, misses listed, resumable, one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefoundry.data.manifest import COLUMNS, read_manifest
from facefoundry.errors import FaceFoundryError
from facefoundry.identity.template import template
from tests.conftest import tiny_config

PHOTOS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real_faces_unlabelled"
FOLDERS = ("celeba_align_89x109", "ffhq256")
PER_FOLDER = 6


def _real(folder: str, n: int = PER_FOLDER) -> list[Path]:
    d = PHOTOS / folder
    if not d.is_dir():
        pytest.skip(f"shared real photos missing: {d} (the align tests need ../shared/data/real_faces_unlabelled)")
    return sorted(d.glob("*.jpg"))[:n]


def _noise(path: Path, seed: int, flat: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    img = (
        np.full((96, 96, 3), rng.integers(0, 256, 3), np.uint8)
        if flat
        else rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """12 real photos (6 CelebA 89×109, 6 FFHQ 256) and one noise image, flat in one folder."""
    src = tmp_path_factory.mktemp("photos")
    for folder in FOLDERS:
        for p in _real(folder):
            shutil.copy(p, src / f"{folder.split('_')[0]}_{p.name}")
    _noise(src / "0_noise.png", 0)  # sorts first: the resumed run must re-derive its miss
    return src


@pytest.fixture(scope="module")
def aligner():
    from facefoundry.identity.detect import FaceAligner

    return FaceAligner(size=112)


def test_crops_land_on_the_template(photos, aligner):
    import dlib

    from facefoundry.data.images import read_image
    from facefoundry.identity.detect import five_points

    real = sorted(p for p in photos.iterdir() if p.suffix == ".jpg")
    faces = [aligner.align(read_image(p)) for p in real]
    found = [f for f in faces if f is not None]
    assert len(found) >= len(real) - 2, f"only {len(found)} of {len(real)} faces found"
    tpl = template(112).numpy()
    fit, shift = [], []
    for f in found:
        assert f.crop.shape == (112, 112, 3) and f.crop.dtype == np.uint8
        assert f.upsample in (1, 2) and f.score > 0
        mapped = f.landmarks5 @ f.A.T + f.t
        fit.append(np.linalg.norm(mapped - tpl, axis=1))
        # a real face is not the template: a turned or tilted head moves the nose and mouth off it
        # (dlib's nose tip is ~5.7 px off on 200-photo averages, eyes ~2.4 px), but nothing is wild
        assert fit[-1].max() < 15, mapped - tpl
        # the warp: landmarks found again on the crop sit where the similarity maps them
        left, top, right, bottom = f.box
        corners = np.array([[left, top], [right, bottom]], np.float64) @ f.A.T + f.t
        box = dlib.rectangle(*(round(v) for v in (corners.min(0).tolist() + corners.max(0).tolist())))
        shape = aligner._predictor(f.crop, box)
        again = five_points(np.array([(p.x, p.y) for p in shape.parts()], np.float64))
        assert np.linalg.norm(again - mapped, axis=1).mean() < 1.5, again - mapped
        shift.append((again - mapped).mean(0))
    # no systematic offset: a half-pixel convention slip between warp and landmarks would show here
    assert np.abs(np.mean(shift, 0)).max() < 0.3, np.mean(shift, 0)
    fit = np.array(fit)
    assert np.median(fit[:, :2]) < 3 and np.median(fit.mean(1)) < 4.5, fit.round(1)
    assert aligner.align(np.zeros((80, 80, 3), np.uint8)) is None


def test_layouts(tmp_path):
    from facefoundry.stages.align import find_photos

    for ident, n in (("alice", 2), ("bob", 3)):
        for k in range(n):
            _noise(tmp_path / "lab" / ident / f"{k}.png", k, flat=True)
    lab = find_photos(tmp_path / "lab")
    assert lab.labelled and lab.identities == ["alice"] * 2 + ["bob"] * 3
    flat = find_photos(tmp_path / "lab", "none")
    assert not flat.labelled and flat.identities[0] == "alice/0"
    _noise(tmp_path / "lab" / "loose.png", 9)
    assert not find_photos(tmp_path / "lab").labelled
    with pytest.raises(FaceFoundryError, match=r"loose\.png: photo outside an identity subfolder"):
        find_photos(tmp_path / "lab", "folders")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no photos")
    with pytest.raises(FaceFoundryError, match="empty: no image files"):
        find_photos(tmp_path / "empty")


def _rows(folder: Path) -> dict:
    m = read_manifest(folder)
    return {c: getattr(m, c) for c in COLUMNS} | {"meta": m.meta}


def test_misses_listed_and_resume(tmp_path, photos, monkeypatch):
    from facefoundry.identity.detect import FaceAligner
    from facefoundry.stages import align as stage

    cfg = tiny_config(tmp_path, base={"image_size": 64})
    summary = stage.run_align(cfg, photos, tmp_path / "full")
    full = _rows(tmp_path / "full")
    misses = json.loads((tmp_path / "full" / "misses.json").read_text())
    assert misses == summary and misses["photos"] == 13
    assert "0_noise.png" in [m["path"] for m in misses["items"]] and misses["misses"] == len(misses["items"]) <= 3
    assert len(full["path"]) == 13 - misses["misses"] and full["meta"]["labelled"] is False
    assert full["meta"]["misses"] == misses["misses"] and full["meta"]["template"] == "arcface"
    assert full["width"][0] == full["height"][0] == 64 and full["source"][0] == "align"
    p = json.loads(full["params"][0])
    assert set(p) == {"source_path", "score", "box", "landmarks5", "upsample"} and len(p["landmarks5"]) == 5
    assert full["label"] == list(range(len(full["label"])))  # every photo its own identity

    # interrupted after 8 detections (two chunks of 4 written), then rerun: the same dataset
    monkeypatch.setattr(stage, "CHUNK", 4)
    calls = {"n": 0}
    real_detect = FaceAligner.detect

    def flaky(self, image):
        calls["n"] += 1
        if calls["n"] == 9:
            raise KeyboardInterrupt
        return real_detect(self, image)

    monkeypatch.setattr(FaceAligner, "detect", flaky)
    with pytest.raises(KeyboardInterrupt):
        stage.run_align(cfg, photos, tmp_path / "resumed")
    assert not (tmp_path / "resumed").exists() and (tmp_path / ".resumed.partial").is_dir()
    calls["n"] = -1000
    assert stage.run_align(cfg, photos, tmp_path / "resumed") == summary
    early = [m for m in misses["items"] if sorted(p.name for p in photos.iterdir()).index(m["path"]) < 8]
    assert calls["n"] - (-1000) == 13 - 8 + len(early)  # the rest, and the early misses again for their reason
    assert _rows(tmp_path / "resumed") == full
    assert not (tmp_path / ".resumed.partial").exists()


def test_labelled_folder(tmp_path):
    from facefoundry.stages.align import run_align

    src = tmp_path / "people"
    for i, p in enumerate(_real("celeba_align_89x109", 4)[-2:] + _real("ffhq256", 2)):
        (src / ("amy" if i < 2 else "bo")).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, src / ("amy" if i < 2 else "bo") / p.name)
    _noise(src / "amy" / "z.png", 1)
    _noise(src / "cy" / "only.png", 2, flat=True)  # an identity with no face at all: recorded, no label
    run_align(tiny_config(tmp_path), src, tmp_path / "out", limit=None)
    rows = _rows(tmp_path / "out")
    assert rows["meta"]["labelled"] is True and rows["meta"]["num_classes"] == 2
    assert rows["identity"] == ["amy", "amy", "bo", "bo"] and rows["label"] == [0, 0, 1, 1]
    misses = json.loads((tmp_path / "out" / "misses.json").read_text())
    assert [m["path"] for m in misses["items"]] == ["amy/z.png", "cy/only.png"]
    assert misses["by_folder"] == {"amy": 1, "cy": 1}


def test_no_face_anywhere_is_a_one_line_error(tmp_path):
    from tests.stages.test_cli_pipeline import assert_one_line_error, ff

    tiny_config(tmp_path)
    src = tmp_path / "noise"
    for k in range(3):
        _noise(src / f"{k}.png", k, flat=bool(k % 2))
    proc = ff(tmp_path, "align", str(src), "--out", str(tmp_path / "out"), "--size", "56")
    assert_one_line_error(proc, f"{src}: no face found in any of the 3 images", "align.upsample=2")
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.partial").exists()
