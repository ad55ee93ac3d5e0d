"""Reader for dlib's serialised DNN files (``.dat``), written from dlib's own format definition.

dlib documents the format only in its source (``dlib/serialize.h``, ``dlib/dnn/core.h``,
``layers.h``, ``input.h``, ``loss.h``, ``cuda/tensor_tools.h``); this module reads what those
``serialize`` functions write, with no dlib at run time:

- integers: one control byte (bit 7 = negative, low 4 bits = byte count) then that many
  little-endian bytes; booleans: the ASCII characters ``'0'``/``'1'``; strings: a size then bytes;
  scalars of type float/double: a ``float_details`` pair (int64 mantissa, int16 exponent).
- tensors (version 2): ``num_samples, k, nr, nc`` then raw little-endian float32 values;
  ``alias_tensor``: version 1 and the four sizes only (views into a layer's ``params``).
- a network: the loss layer (version, details), then each wrapper's version from the outermost
  layer inwards (``add_layer`` 2, the input-holding ``add_layer`` 3, ``add_tag_layer`` and
  ``add_skip_layer`` 1), then — innermost first, i.e. in forward order — each ``add_layer``'s
  details followed by its bookkeeping (three booleans and cached tensors).

``read_dlib_net`` returns that forward-order layer list; the architecture is rebuilt from it
(see :mod:`facefoundry.identity.dlib_resnet`).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facefoundry.errors import FaceFoundryError


class _Stream:
    def __init__(self, data: bytes, name: str):
        self.data, self.pos, self.name = data, 0, name

    def fail(self, what: str) -> FaceFoundryError:
        return FaceFoundryError(
            f"{self.name}: not a dlib network file this reader understands ({what} at byte {self.pos})"
        )

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail("truncated file")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        ctrl = self.take(1)[0]
        size, neg = ctrl & 0x0F, ctrl & 0x80
        if size > 8 or ctrl & 0x70:
            raise self.fail(f"bad integer control byte 0x{ctrl:02x}")
        value = int.from_bytes(self.take(size), "little") if size else 0
        return -value if neg else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        return float(np.ldexp(float(mantissa), exponent))

    def bool(self) -> bool:
        ch = self.take(1)
        if ch not in (b"0", b"1"):
            raise self.fail(f"bad boolean {ch!r}")
        return ch == b"1"

    def string(self) -> str:
        n = self.int()
        if not 0 <= n < 1 << 16:
            raise self.fail(f"implausible string length {n}")
        return self.take(n).decode("latin-1")

    def peek_string(self) -> str | None:
        """The string at the cursor if one is there (cursor unchanged), else None."""
        pos = self.pos
        try:
            s = self.string()
            return s if s.isprintable() and s else None
        except FaceFoundryError:
            return None
        finally:
            self.pos = pos

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise self.fail(f"tensor version {version} (only version 2, raw float32, is supported)")
        shape = tuple(self.int() for _ in range(4))
        n = int(np.prod(shape))
        raw = self.take(4 * n)
        return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)

    def alias_tensor(self) -> tuple[builtins.int, builtins.int, builtins.int, builtins.int]:  # int: the method above
        version = self.int()
        if version != 1:
            raise self.fail(f"alias_tensor version {version}")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


@dataclass
class DlibLayer:
    """One computational layer, in forward order. ``params`` holds the named weights."""

    kind: str  # input | con | affine | relu | max_pool | avg_pool | add_prev | fc
    version: str
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class DlibNet:
    loss: str
    loss_attrs: dict[str, float]
    wrappers: list[int]  # wrapper versions outermost → innermost (2 = layer, 1 = tag/skip, 3 = input layer)
    layers: list[DlibLayer]

    def kinds(self) -> list[str]:
        return [layer.kind for layer in self.layers]


def _pool(s: _Stream, kind: str, version: str) -> DlibLayer:
    nr, nc, sy, sx, py, px = (s.int() for _ in range(6))
    return DlibLayer(kind, version, {"window": (nr, nc), "stride": (sy, sx), "padding": (py, px)})


def _con(s: _Stream, version: str) -> DlibLayer:
    params = s.tensor().reshape(-1)
    n, nr, nc, sy, sx, py, px = (s.int() for _ in range(7))
    filt, bias = s.alias_tensor(), s.alias_tensor()
    for _ in range(4):  # learning-rate / weight-decay multipliers
        s.float()
    use_bias = s.bool() if version in ("con_5", "con_6") else True
    if version == "con_6":
        s.bool()  # fused relu flag (not used by this network)
    nf = int(np.prod(filt))
    if params.size != nf + (int(np.prod(bias)) if use_bias else 0):
        raise s.fail(f"{version}: params size {params.size} does not match filters {filt} + biases {bias}")
    p = {"weight": params[:nf].reshape(filt)}
    if use_bias:
        p["bias"] = params[nf:].copy()
    return DlibLayer("con", version, {"filters": n, "kernel": (nr, nc), "stride": (sy, sx), "padding": (py, px)}, p)


def _affine(s: _Stream, version: str) -> DlibLayer:
    params = s.tensor().reshape(-1)
    g, b = s.alias_tensor(), s.alias_tensor()
    mode = s.int()
    if version == "affine_2":
        s.bool()  # disabled flag
    ng = int(np.prod(g))
    if params.size != ng + int(np.prod(b)):
        raise s.fail(f"{version}: params size {params.size} does not match gamma {g} + beta {b}")
    return DlibLayer(
        "affine", version, {"mode": mode, "shape": g}, {"gamma": params[:ng].copy(), "beta": params[ng:].copy()}
    )


def _fc(s: _Stream, version: str) -> DlibLayer:
    n_out, n_in = s.int(), s.int()
    params = s.tensor().reshape(-1)
    w, _bias_shape = s.alias_tensor(), s.alias_tensor()
    bias_mode = s.int()
    for _ in range(4):
        s.float()
    use_bias = s.bool() if version == "fc_3" else bias_mode == 0
    nw = int(np.prod(w))
    p = {"weight": params[:nw].reshape(n_in, n_out)}  # output = input · W, W is [inputs, outputs]
    if use_bias and params.size > nw:
        p["bias"] = params[nw : nw + n_out].copy()
    return DlibLayer("fc", version, {"outputs": n_out, "inputs": n_in}, p)


def _details(s: _Stream) -> DlibLayer:
    version = s.string()
    if version.startswith("con_"):
        return _con(s, version)
    if version.startswith("affine_"):
        return _affine(s, version)
    if version.startswith("relu_"):
        return DlibLayer("relu", version)
    if version.startswith("add_prev_"):
        return DlibLayer("add_prev", version)
    if version == "max_pool_2":
        return _pool(s, "max_pool", version)
    if version == "avg_pool_2":
        return _pool(s, "avg_pool", version)
    if version in ("fc_2", "fc_3"):
        return _fc(s, version)
    raise s.fail(f"unsupported layer {version!r}")


def _input(s: _Stream) -> DlibLayer:
    version = s.string()
    if version not in ("input_rgb_image_sized", "input_rgb_image"):
        raise s.fail(f"unsupported input layer {version!r}")
    avg = (s.float(), s.float(), s.float())
    attrs: dict[str, Any] = {"avg_rgb": avg}
    if version == "input_rgb_image_sized":
        attrs["size"] = (s.int(), s.int())
    return DlibLayer("input", version, attrs)


def read_dlib_net(path: str | Path) -> DlibNet:
    """Parse a dlib network ``.dat`` file into its loss, wrapper chain and forward-order layers."""
    path = Path(path)
    try:
        s = _Stream(path.read_bytes(), str(path))
    except OSError as exc:
        raise FaceFoundryError(f"{path}: cannot read dlib model ({exc.strerror})") from None
    if s.int() != 1:
        raise s.fail("loss layer version")
    loss = s.string()
    if loss != "loss_metric_2":
        raise s.fail(f"unsupported loss {loss!r}")
    loss_attrs = {"margin": s.float(), "dist_thresh": s.float()}
    wrappers = []
    while True:
        version = s.int()
        if version not in (1, 2, 3):
            raise s.fail(f"wrapper version {version}")
        wrappers.append(version)
        if version == 3:  # the add_layer that holds the input layer
            break
    layers = [_input(s)]
    n_layers = wrappers.count(2) + 1
    for i in range(n_layers):
        layers.append(_details(s))
        for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, output/grad disabled
            s.bool()
        s.tensor()  # x_grad
        s.tensor()  # cached_output
        s.tensor()  # params_grad (grad_final for the input-holding layer)
        if i == 0 and s.peek_string() is None:
            s.int()  # _sample_expansion_factor (input-holding layer, newer files)
    if s.pos != len(s.data):
        raise s.fail(f"{len(s.data) - s.pos} trailing bytes after {n_layers} layers")
    return DlibNet(loss, loss_attrs, wrappers, layers)
