"""What a face detector finds in a photo: a box, a score and five landmarks (:class:`Detection`), whichever
detector found it (dlib's HOG + 68 landmarks in :mod:`.detect`, YuNet in :mod:`.yunet`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detection:
    """One face in a source photo: detector box and score, and its five landmarks (source pixels)."""

    score: float
    box: tuple[int, int, int, int]  # left, top, right, bottom (dlib rectangle, inclusive)
    landmarks5: np.ndarray  # [5, 2] float (x, y): left eye, right eye, nose, mouth left, mouth right
    upsample: int  # the detector upsampling that found it
