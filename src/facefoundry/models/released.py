"""Released insightface models: an arcface_torch ``backbone.pth`` or an ONNX file, used directly.

- ``import_arcface_torch(path, arch)``: the state dict of an arcface_torch IResNet (``r18`` …
  ``r200``) onto our :class:`IResNet` (same parameter names), as an :class:`FRModel` with
  insightface's preprocessing (RGB, ``(x/255 − 0.5)/0.5``). ``facefoundry import-model`` saves it
  as a normal model folder; ``train.init`` starts a training run from it.
- ``OnnxModel``: an insightface-format ONNX recognition model run by onnxruntime, for evaluation.
  Its weights become an IResNet only when the graph kept the parameter names (an export without
  BatchNorm folding); released ONNX files usually did not, and are evaluation-only.
- ``load_model(path, arch)``: whichever of the three a path is (model folder, ``.pth``, ``.onnx``).

Pickles are never loaded unsafely: ``torch.load(..., weights_only=True)`` only. Every problem is a
one-line :class:`FaceFoundryError` naming the file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facefoundry.data.transforms import Preprocess
from facefoundry.errors import FaceFoundryError
from facefoundry.models.bundle import INDEX, FRModel
from facefoundry.models.iresnet import IResNet

# arcface_torch's IResNet names → blocks per stage (backbones/iresnet.py, get_model)
ARCHS: dict[str, list[int]] = {
    "r18": [2, 2, 2, 2],
    "r34": [3, 4, 6, 3],
    "r50": [3, 4, 14, 3],
    "r100": [3, 13, 30, 3],
    "r200": [6, 26, 60, 6],
}
INSIGHTFACE_SIZE = 112  # arcface_torch's fc expects 7×7 maps: 112-px input
TORCH_SUFFIXES = (".pth", ".pt")


def insightface_preprocess(size: int = INSIGHTFACE_SIZE) -> Preprocess:
    """arcface_torch training and torch2onnx: RGB, ``(x/255 − 0.5) / 0.5`` = ``(x − 127.5) / 127.5``."""
    return Preprocess("RGB", 0.5, 0.5, size)


def file_digest(path: str | Path) -> str:
    """md5 of a weights file (streamed), or DVC's hash of a model folder."""
    path = Path(path)
    if path.is_dir():
        from facefoundry.data.hashing import dvc_dir_hash

        return dvc_dir_hash(path)
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_arch(arch: str | None, where: str | Path | None = None) -> str | None:
    if arch is None or arch in ARCHS:
        return arch
    prefix = f"{where}: " if where else ""
    raise FaceFoundryError(
        f"{prefix}unknown arch {arch!r}: expected one of {', '.join(ARCHS)} (arcface_torch "
        "IResNets; MobileFaceNet and ViT backbones are not supported)"
    )


def _arch_name(layers: list[int]) -> str:
    return next((name for name, ls in ARCHS.items() if ls == layers), f"iresnet{layers}")


def _few(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", …" if len(keys) > n else "")


# -- arcface_torch backbone.pth ----------------------------------------------------------------
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``backbone.pth`` (weights-only load), ``module.`` prefixes stripped, as float32."""
    from facefoundry.models.base import load_state_file

    state = load_state_file(path)
    return {k.removeprefix("module."): v.float() if v.is_floating_point() else v for k, v in state.items()}


def _blocks(state: dict[str, Any]) -> list[int]:
    return [len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5)]


def backbone_from_state_dict(
    state: dict[str, torch.Tensor], arch: str | None, where: str, input_size: int | None = None
) -> tuple[IResNet, str]:
    """An IResNet holding ``state``; the depth from ``arch`` (or the keys), width and sizes from shapes."""
    check_arch(arch, where)
    if "conv1.weight" not in state or "fc.weight" not in state:
        raise FaceFoundryError(
            f"{where}: not an arcface_torch IResNet state dict (no conv1.weight/fc.weight; "
            "MobileFaceNet and ViT backbones are not supported)"
        )
    found = _blocks(state)
    layers = ARCHS[arch] if arch else found
    if min(layers) < 1:
        raise FaceFoundryError(f"{where}: not an arcface_torch IResNet state dict (blocks per stage {found})")
    width = int(state["conv1.weight"].shape[0])
    emb, flat = (int(s) for s in state["fc.weight"].shape)
    side = round((flat / (width * 8)) ** 0.5)
    if side * side * width * 8 != flat:
        raise FaceFoundryError(
            f"{where}: fc.weight {list(state['fc.weight'].shape)} does not fit a width-{width} "
            "IResNet (expected width·8·side² inputs)"
        )
    size = input_size or (INSIGHTFACE_SIZE if side == 7 else side * 16)
    name = arch or _arch_name(layers)
    net = IResNet(list(layers), width, emb, size, any(".se." in k for k in state))
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        hint = f"; its blocks per stage are {found} ({_arch_name(found)})" if found != list(layers) else ""
        parts = [
            f"{len(keys)} {label} keys ({_few(keys)})"
            for label, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        ]
        raise FaceFoundryError(
            f"{where}: state dict does not fit {name} (IResNet {list(layers)}): " + ", ".join(parts) + hint
        )
    loaded, wrong = {}, []
    for k, ref in expected.items():
        if k not in state:
            loaded[k] = ref
            continue
        v = state[k]
        if tuple(v.shape) != tuple(ref.shape):
            if v.numel() == ref.numel():
                v = v.reshape(ref.shape)  # e.g. PReLU slopes stored [C,1,1]
            else:
                wrong.append(f"{k} {list(v.shape)} vs {list(ref.shape)}")
                continue
        loaded[k] = v.to(ref.dtype)
    if wrong:
        raise FaceFoundryError(
            f"{where}: state dict does not fit {name} (IResNet {list(layers)}, width {width}): "
            f"{len(wrong)} tensors of another shape ({_few(wrong)})"
        )
    net.load_state_dict(loaded, strict=True)
    return net.eval(), name


def import_arcface_torch(path: str | Path, arch: str | None = None) -> FRModel:
    """An arcface_torch ``backbone.pth`` (+ its arch name: r18, r34, r50, r100, r200) as an FRModel."""
    path = Path(path)
    check_arch(arch, str(path))
    net, name = backbone_from_state_dict(read_state_dict(path), arch, str(path))
    info = {"imported_from": str(path), "source_format": "arcface_torch", "arch": name, "source_md5": file_digest(path)}
    return FRModel(net, insightface_preprocess(net.config["input_size"]), info)


# -- ONNX ----------------------------------------------------------------------------------------
class OnnxModel:
    """An insightface-format ONNX recognition model: normalised NCHW float in, embedding out.

    As insightface's ``ArcFaceONNX``: RGB input, ``(x − 127.5) / 127.5``, unless the graph opens
    with its own ``Sub`` and ``Mul`` (older converted models), which take raw 0..255 pixels. The
    input side is read from the graph (112 when it is not fixed).
    """

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        import onnx
        import onnxruntime as ort

        self.path = path = Path(path)
        if not path.is_file():
            raise FaceFoundryError(f"{path}: file does not exist")
        try:
            self.proto = onnx.load(str(path))
        except Exception as exc:  # protobuf raises several types
            raise FaceFoundryError(f"{path}: not a readable ONNX model ({exc.__class__.__name__})") from None
        heads = self.proto.graph.node[:8]
        raw = any(n.op_type == "Sub" or n.name.startswith(("Sub", "_minus")) for n in heads) and any(
            n.op_type == "Mul" or n.name.startswith(("Mul", "_mul")) for n in heads
        )
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(self.proto.SerializeToString(), providers=providers)
        except Exception as exc:  # onnxruntime's own error types
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
            raise FaceFoundryError(f"{path}: onnxruntime cannot run this model ({first})") from None
        inp, outs = self.session.get_inputs()[0], self.session.get_outputs()
        shape = list(inp.shape)
        if len(shape) != 4 or shape[1] not in (3, "3"):
            raise FaceFoundryError(f"{path}: expected one NCHW 3-channel image input, got {inp.name} {shape}")
        if len(outs[0].shape) != 2:
            raise FaceFoundryError(f"{path}: expected an [N, D] embedding output, got {outs[0].name} {outs[0].shape}")
        sides = [s for s in shape[2:] if isinstance(s, int) and s > 0]
        size = sides[0] if sides else INSIGHTFACE_SIZE
        self.input_name = inp.name
        self.batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None  # fixed batch size, if any
        self.dtype = np.float16 if "float16" in inp.type else np.float32
        self.normalised_inside = raw
        self.preprocess = Preprocess("RGB", 0.0, 1 / 255, size) if raw else insightface_preprocess(size)
        self.info = {
            "imported_from": str(path),
            "source_format": "onnx",
            "input": inp.name,
            "input_size": size,
            "normalised_inside": raw,
        }

    def embed_raw(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised embeddings of preprocessed NCHW float images (any batch size)."""
        arr = x.detach().cpu().numpy().astype(self.dtype)
        step = self.batch or len(arr)
        out = [self.session.run(None, {self.input_name: arr[s : s + step]})[0] for s in range(0, len(arr), step)]
        return torch.from_numpy(np.concatenate(out).astype(np.float32)).to(x.device)

    __call__ = embed_raw

    def initializers(self) -> dict[str, np.ndarray]:
        """Named weights of the graph, with ``Identity`` aliases (the exporter's shared tensors) resolved."""
        from onnx import numpy_helper

        init = {t.name: numpy_helper.to_array(t) for t in self.proto.graph.initializer}
        for node in self.proto.graph.node:
            if node.op_type == "Identity" and node.input and node.input[0] in init:
                init.setdefault(node.output[0], init[node.input[0]])
        return init

    def to_frmodel(self, arch: str | None = None) -> FRModel:
        """The graph's weights as an IResNet, when they kept insightface's parameter names."""
        check_arch(arch, str(self.path))
        if self.normalised_inside:
            raise self._not_trainable("the graph normalises its input itself")
        init = self.initializers()
        keys = [k for k in IResNet([1, 1, 1, 1], 8, 8, 16).state_dict() if not k.endswith("num_batches_tracked")]
        state: dict[str, torch.Tensor] = {}
        for name, arr in init.items():  # "backbone.layer1.0.conv1.weight" → "layer1.0.conv1.weight"
            parts = name.split(".")
            for i in range(len(parts)):
                key = ".".join(parts[i:])
                if key.startswith(("conv1.", "bn1.", "prelu.", "layer", "bn2.", "fc.", "features.")):
                    state.setdefault(key, torch.from_numpy(np.array(arr, dtype=np.float32)))
                    break
        top = [k for k in keys if not k.startswith("layer")]
        if any(k not in state for k in top) or not any(k.startswith("layer1.0.") for k in state):
            sample = next((n for n in init if n.startswith("onnx::")), next(iter(init), "none"))
            raise self._not_trainable(
                f"its weights do not keep IResNet parameter names (e.g. {sample!r}; the "
                "export folded BatchNorm into the convolutions)"
            )
        net, name = backbone_from_state_dict(state, arch, str(self.path), self.preprocess.image_size)
        return FRModel(net, self.preprocess, {**self.info, "arch": name, "source_md5": file_digest(self.path)})

    def _not_trainable(self, why: str) -> FaceFoundryError:
        return FaceFoundryError(
            f"{self.path}: {why}: ONNX models can be evaluated (evaluate --model "
            f"{self.path.name}) but not fine-tuned or imported; use the arcface_torch "
            "backbone.pth with its arch (e.g. --arch r50) instead"
        )


# -- any of the three --------------------------------------------------------------------------
def load_model(
    spec: str | Path, arch: str | None = None, device: str | torch.device = "cpu", trainable: bool = False
) -> FRModel | OnnxModel:
    """A model folder, an arcface_torch ``.pth`` (+ ``arch``) or an ``.onnx`` file.

    ``trainable``: an ONNX file must become an IResNet (its weights), or this fails with why.
    """
    path = Path(spec)
    check_arch(arch, str(path))
    if path.is_dir():
        if not (path / INDEX).is_file():
            raise FaceFoundryError(
                f"{path}: not a FaceFoundry model (no {INDEX}); expected a model folder, "
                "an arcface_torch backbone.pth or an .onnx file"
            )
        try:
            return FRModel.load(path)
        except FaceFoundryError:
            raise
        except Exception as exc:  # a damaged weights file inside the folder
            raise FaceFoundryError(f"{path}: unreadable model folder ({exc.__class__.__name__})") from None
    if not path.exists():
        raise FaceFoundryError(
            f"{path}: model does not exist (expected a model folder, an arcface_torch backbone.pth or an .onnx file)"
        )
    suffix = path.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        return import_arcface_torch(path, arch)
    if suffix == ".onnx":
        onnx_model = OnnxModel(path, device)
        return onnx_model.to_frmodel(arch) if trainable else onnx_model
    raise FaceFoundryError(
        f"{path}: unknown model format {suffix or '(no suffix)'!r} (expected a model folder, .pth/.pt or .onnx)"
    )


def load_backbone(spec: str | Path, arch: str | None = None) -> FRModel:
    """A starting point for training or import: the IResNet weights and their preprocessing."""
    model = load_model(spec, arch, trainable=True)
    assert isinstance(model, FRModel)
    return model


def import_to_folder(src: str | Path, out: str | Path, arch: str | None = None, log=print) -> FRModel:
    """``facefoundry import-model``: a released ``.pth`` (or name-keeping ``.onnx``) → a model folder."""
    src, out = Path(src), Path(out)
    if src.is_dir():
        raise FaceFoundryError(
            f"{src}: already a folder; import-model takes an arcface_torch backbone.pth or an .onnx file"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FaceFoundryError(f"--out {out}: already exists and is not empty (choose a new folder)")
    model = load_backbone(src, arch)
    model.save(out)
    c = model.backbone.config
    log(
        f"wrote {out} from {src}: {model.info['arch']} (width {c['width']}, {c['embedding_size']}-d, "
        f"{model.preprocess.image_size}-px {model.preprocess.color_order} input)"
    )
    return model
