"""Crop geometries: the platform's insightface template and dlib's face chip, and the map between them.

The platform aligns every face to the insightface 5-point template (eye centres, nose tip, mouth
corners at 112 px, scaled to the crop side). dlib's recognition network was trained on dlib's own
"face chip": ``get_face_chip_details(shape, size=150, padding=0.25)`` maps landmarks onto dlib's
mean face shape (``mean_face_shape_x/y`` in ``dlib/image_transforms/interpolation.h``, points
17–67 of the 68-point layout, on a unit square padded by ``padding`` on every side).

The five template points are located in that mean shape (eye centres = mean of points 36–41 and
42–47, nose tip = 30, mouth corners = 48 and 54), which fixes one similarity from template
coordinates to chip coordinates, computed once per crop size and applied with
``grid_sample`` so that it stays differentiable.
"""

from __future__ import annotations

import torch

from facefoundry.identity.template import similarity_fit, template

# dlib's mean face shape, points 36–54 of the 68-point layout (x, y on the unpadded unit square)
_EYE_L = [
    (0.121737, 0.216423),
    (0.187122, 0.178758),
    (0.265825, 0.179852),
    (0.334606, 0.231733),
    (0.260918, 0.245099),
    (0.182743, 0.244077),
]  # 36–41 (image left)
_EYE_R = [
    (0.645647, 0.231733),
    (0.714428, 0.179852),
    (0.793132, 0.178758),
    (0.858516, 0.216423),
    (0.79751, 0.244077),
    (0.719335, 0.245099),
]  # 42–47
_NOSE_TIP = (0.490127, 0.515625)  # 30
_MOUTH_L, _MOUTH_R = (0.254149, 0.780233), (0.726104, 0.780233)  # 48, 54


def dlib_chip_points(size: int = 150, padding: float = 0.25) -> torch.Tensor:
    """Where the five template points fall in a dlib face chip of ``size`` px, ``[5, 2]``."""
    unit = torch.tensor(
        [
            torch.tensor(_EYE_L).mean(0).tolist(),
            torch.tensor(_EYE_R).mean(0).tolist(),
            list(_NOSE_TIP),
            list(_MOUTH_L),
            list(_MOUTH_R),
        ],
        dtype=torch.float64,
    )
    return ((padding + unit) / (2 * padding + 1) * size).float()


def template_to_chip(crop_size: int, chip_size: int = 150, padding: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed similarity ``(A [1,2,2], t [1,2])`` from template-crop pixels to dlib-chip pixels."""
    return similarity_fit(template(crop_size)[None].double(), dlib_chip_points(chip_size, padding)[None].double())
