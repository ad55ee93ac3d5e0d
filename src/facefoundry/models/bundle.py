"""A trained FR model as a folder: ``facefoundry_model.json`` + one subfolder per component.

The index records the preprocessing (colour order, normalisation, input size) so an
evaluator embeds images exactly as the backbone was trained, plus where the model
came from (dataset hash, MLflow run).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from facefoundry.data.transforms import Preprocess
from facefoundry.errors import FaceFoundryError
from facefoundry.io import atomic_write_json, load_json_file
from facefoundry.models.heads import MarginHead
from facefoundry.models.iresnet import IResNet

INDEX = "facefoundry_model.json"


@dataclass
class FRModel:
    backbone: IResNet
    preprocess: Preprocess
    info: dict[str, Any]
    head: MarginHead | None = None

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        self.backbone.save_pretrained(folder / "backbone")
        if self.head is not None:
            self.head.save_pretrained(folder / "head")
        index = {
            "backbone": "IResNet",
            "head": "MarginHead" if self.head is not None else None,
            "preprocess": self.preprocess.to_dict(),
            **self.info,
        }
        atomic_write_json(folder / INDEX, index)  # written last: its presence marks a complete model
        return folder

    @classmethod
    def load(cls, folder: str | Path, with_head: bool = False, map_location: str | torch.device = "cpu") -> FRModel:
        folder = Path(folder)
        path = folder / INDEX
        if not path.is_file():
            raise FaceFoundryError(f"{folder}: not a FaceFoundry model (no {INDEX})")
        index = load_json_file(path, "model index")
        if not isinstance(index.get("preprocess"), dict):
            raise FaceFoundryError(f"{path}: no 'preprocess' section (colour order, normalisation, input size)")
        backbone = IResNet.from_pretrained(folder / "backbone", map_location)
        head = MarginHead.from_pretrained(folder / "head", map_location) if with_head and index.get("head") else None
        try:
            pre = Preprocess(**index.pop("preprocess"))
        except TypeError as exc:
            raise FaceFoundryError(f"{path}: bad 'preprocess' section ({exc})") from None
        return cls(backbone=backbone, preprocess=pre, info=index, head=head)


class RawEmbedding(torch.nn.Module):
    """ONNX/inference wrapper: normalised NCHW float in, unnormalised embedding out (insightface)."""

    def __init__(self, backbone: IResNet):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.embed_raw(x)


def export_onnx(backbone: IResNet, path: str | Path, input_size: int) -> Path:
    """Export with a dynamic batch axis; written beside the model folder atomically."""
    import io

    from facefoundry.io import atomic_write_bytes

    model = RawEmbedding(backbone).eval()
    dummy = torch.zeros(1, 3, input_size, input_size)
    buf = io.BytesIO()
    torch.onnx.export(
        model,
        (dummy,),
        cast("str", buf),  # the TorchScript exporter (dynamo=False) writes to a file object too; the stub says path
        input_names=["input"],
        output_names=["embedding"],
        dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
