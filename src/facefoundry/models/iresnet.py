"""IResNet backbones with insightface's layout and parameter names.

Names (``conv1``, ``bn1``, ``prelu``, ``layer1..4``, ``bn2``, ``fc``, ``features``)
match ``arcface_torch/backbones/iresnet.py``, so its released ``backbone.pth`` files
load with ``load_state_dict``. Width, depth, SE blocks and input size are arguments,
which gives the tiny CPU variant without a second implementation. ``forward``
returns ``(unit embedding, norm)`` as AdaFace does, so norm-aware heads plug in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from facefoundry.models.base import ConfigModule, register_to_config
from facefoundry.registry import Registry

BACKBONES: Registry[IResNet] = Registry("backbone")


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class SEModule(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        mid = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, mid, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(mid, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.relu(self.fc1(w))))


class IBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1, downsample: nn.Module | None = None, se: bool = False):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-05)
        self.conv1 = conv3x3(cin, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-05)
        self.prelu = nn.PReLU(cout)
        self.conv2 = conv3x3(cout, cout, stride)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-05)
        self.se = SEModule(cout) if se else None
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        if self.se is not None:
            out = self.se(out)
        return out + identity


def _out_side(size: int, stages: int = 4) -> int:
    for _ in range(stages):
        size = (size - 1) // 2 + 1
    return size


class IResNet(ConfigModule):
    weights_name = "backbone.pth"  # insightface's file name
    layer1: nn.Sequential  # layer1..4 are set with setattr in __init__
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    @register_to_config
    def __init__(
        self,
        layers: Sequence[int] = (2, 2, 2, 2),
        width: int = 64,
        embedding_size: int = 512,
        input_size: int = 112,
        se: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"IResNet needs 4 stages, got layers={list(layers)}")
        widths = [width, width * 2, width * 4, width * 8]
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=1e-05)
        self.prelu = nn.PReLU(width)
        cin = width
        for i, (n, cout) in enumerate(zip(layers, widths), start=1):
            blocks = [
                IBasicBlock(
                    cin,
                    cout,
                    2,
                    nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout, eps=1e-05)),
                    se,
                )
            ]
            blocks += [IBasicBlock(cout, cout, se=se) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            cin = cout
        side = _out_side(input_size)
        self.bn2 = nn.BatchNorm2d(cin, eps=1e-05)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc = nn.Linear(cin * side * side, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-05)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        for m in self.modules():  # zero-init the last BN of each residual branch
            if isinstance(m, IBasicBlock):
                nn.init.constant_(m.bn3.weight, 0)

    def embed_raw(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised embedding, what insightface's backbone returns (and ONNX exports)."""
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.embed_raw(x)
        norm = torch.linalg.vector_norm(e.float(), dim=1, keepdim=True).clamp_min(1e-6)
        return e / norm, norm


_DEPTHS = {"r18": [2, 2, 2, 2], "r34": [3, 4, 6, 3], "r50": [3, 4, 14, 3], "r100": [3, 13, 30, 3]}


def _named(layers: list[int], se: bool):
    def build(
        input_size: int, embedding_size: int = 512, width: int = 64, dropout: float = 0.0, se_: bool = se, **_: object
    ) -> IResNet:
        return IResNet(list(layers), width, embedding_size, input_size, se_, dropout)

    return build


for _name, _layers in _DEPTHS.items():
    BACKBONES.register(_name)(_named(_layers, False))
    BACKBONES.register(f"{_name}_se")(_named(_layers, True))


@BACKBONES.register("iresnet")
def _custom(
    input_size: int,
    embedding_size: int = 512,
    width: int = 64,
    dropout: float = 0.0,
    layers: list[int] | None = None,
    se_: bool = False,
    **_: object,
) -> IResNet:
    """Free depth/width, e.g. the tiny CPU default ``layers=[1,1,1,1], width=16``."""
    return IResNet(list(layers or [1, 1, 1, 1]), width, embedding_size, input_size, se_, dropout)


def build_backbone(
    name: str,
    input_size: int,
    embedding_size: int = 512,
    width: int = 64,
    layers: list[int] | None = None,
    se: bool = False,
    dropout: float = 0.0,
) -> IResNet:
    factory = BACKBONES.get(name)
    kwargs = {"embedding_size": embedding_size, "width": width, "dropout": dropout, "layers": layers}
    if se:
        kwargs["se_"] = True
    return factory(input_size, **kwargs)
