"""A procedural parametric head: identity = shape + appearance parameters in [-1, 1].

The surface is a function of sphere coordinates (φ longitude, 0 = facing the camera;
θ colatitude, 0 = crown) so geometry, landmarks and the procedural skin/hair/eye
texture all hang off the same coordinates and stay attached under expressions.
"""

from __future__ import annotations

import math
from typing import cast

import torch

PI = math.pi

SHAPE = [
    "head_width",
    "head_length",
    "head_depth",
    "jaw_width",
    "chin_protrusion",
    "chin_length",
    "cheekbone_height",
    "cheekbone_width",
    "cheek_fullness",
    "nose_length",
    "nose_width",
    "nose_protrusion",
    "nose_bridge",
    "nose_tip_height",
    "eye_size",
    "eye_spacing",
    "eye_depth",
    "eye_height",
    "brow_ridge",
    "brow_height",
    "forehead_slope",
    "lip_thickness",
    "mouth_width",
    "mouth_height",
    "philtrum_depth",
    "ear_position",
    "ear_size",
    "temple_width",
    "face_taper",
    "crown_height",
    "nasolabial_depth",
    "asymmetry",
]
APPEARANCE = [
    "skin_tone",
    "skin_redness",
    "skin_texture",
    "eyebrow_thickness",
    "eyebrow_arch",
    "eyebrow_darkness",
    "eye_color",
    "lip_color",
    "facial_hair",
    "facial_hair_style",
    "hairline",
    "hair_length",
    "hair_color",
    "hair_lightness",
]
IDENTITY = SHAPE + APPEARANCE
EXPRESSION = ["smile", "mouth_open", "brows", "eye_closure", "age"]

HAIR_PALETTE = torch.tensor(
    [
        [0.08, 0.06, 0.05],
        [0.25, 0.15, 0.08],
        [0.45, 0.28, 0.14],
        [0.72, 0.55, 0.30],
        [0.55, 0.20, 0.08],
        [0.30, 0.28, 0.27],
    ]
)
IRIS_PALETTE = torch.tensor(
    [[0.25, 0.15, 0.08], [0.45, 0.30, 0.12], [0.30, 0.45, 0.25], [0.25, 0.40, 0.65], [0.45, 0.50, 0.55]]
)


def _g(phi: torch.Tensor, theta: torch.Tensor, pc, tc, sp, st) -> torch.Tensor:
    """Anisotropic Gaussian bump on the sphere-coordinate chart."""
    return torch.exp(-0.5 * (((phi - pc) / sp) ** 2 + ((theta - tc) / st) ** 2))


def _pal(palette: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear colour lookup, ``x`` in [-1, 1] → [B, 3]."""
    pos = (x.clamp(-1, 1) + 1) / 2 * (len(palette) - 1)
    i0 = pos.floor().long().clamp(max=len(palette) - 2)
    w = (pos - i0)[..., None]
    return palette[i0] * (1 - w) + palette[i0 + 1] * w


class Layout:
    """Where the features sit, per face: [B] tensors derived from identity + expression."""

    def __init__(self, ident: dict[str, torch.Tensor], expr: dict[str, torch.Tensor]):
        p = ident
        self.eye_t = PI * (0.455 + 0.015 * p["eye_height"])
        self.eye_p = 0.39 + 0.04 * p["eye_spacing"]
        self.eye_w = 0.085 * (1 + 0.15 * p["eye_size"])
        self.brow_t = self.eye_t - 0.085 - 0.015 * p["brow_height"] - 0.025 * expr["brows"]
        self.nose_t = PI * (0.536 + 0.02 * p["nose_tip_height"]) + 0.02 * p["nose_length"]
        self.mouth_t = PI * (0.655 + 0.015 * p["mouth_height"])
        self.mouth_w = 0.30 * (1 + 0.12 * p["mouth_width"]) + 0.03 * expr["smile"]
        self.smile = expr["smile"]
        self.chin_t = PI * (0.76 + 0.02 * p["chin_length"])

    def mouth_curve(self, phi: torch.Tensor) -> torch.Tensor:
        """θ of the lip line: corners lift with a smile."""
        u = (phi / self.mouth_w[:, None]).clamp(-1, 1)
        return self.mouth_t[:, None] - 0.045 * self.smile[:, None] * u**2


def surface(
    phi: torch.Tensor, theta: torch.Tensor, ident: dict[str, torch.Tensor], expr: dict[str, torch.Tensor]
) -> torch.Tensor:
    """3D points [B, N, 3] (x right, y up, z toward the camera) for coordinates [B, N]."""
    p = {k: v[:, None] for k, v in ident.items()}
    e = {k: v[:, None] for k, v in expr.items()}
    L = Layout(ident, expr)
    et, ep, nt, mt, ct = (t[:, None] for t in (L.eye_t, L.eye_p, L.nose_t, L.mouth_t, L.chin_t))
    st, sp, ct_ = torch.sin(theta), torch.sin(phi), torch.cos(theta)
    nx, ny, nz = st * sp, ct_, st * torch.cos(phi)
    lower = torch.sigmoid((theta - PI * 0.6) / 0.08)
    rx = 0.74 * (1 + 0.07 * p["head_width"]) * (1 + 0.08 * p["jaw_width"] * lower - 0.06 * p["face_taper"] * lower)
    rx = rx * (1 + 0.04 * p["temple_width"] * _g(phi, theta, 0, PI * 0.35, 2.0, 0.25))
    ry = 1.0 * (1 + 0.06 * p["head_length"]) * (1 + 0.05 * p["crown_height"] * (ny > 0))
    rz = 0.88 * (1 + 0.06 * p["head_depth"]) * (1 - 0.05 * p["forehead_slope"] * (ny > 0.3) * (nz > 0))
    side = torch.sign(phi)
    asym = 1 + 0.06 * p["asymmetry"] * side
    d = torch.zeros_like(phi)
    for s in (-1.0, 1.0):  # bilateral features
        d = d - 0.06 * (1 + 0.5 * p["eye_depth"]) * _g(phi, theta, s * ep, et, 0.12 * (1 + 0.15 * p["eye_size"]), 0.07)
        d = d + 0.045 * (1 + 0.6 * p["brow_ridge"]) * _g(phi, theta, s * ep, et - 0.09, 0.17, 0.04)
        d = d + 0.05 * (1 + 0.6 * p["cheekbone_height"]) * _g(
            phi, theta, s * (0.56 + 0.07 * p["cheekbone_width"]), PI * 0.53, 0.15, 0.08
        )
        d = d + 0.04 * p["cheek_fullness"] * _g(phi, theta, s * 0.45, PI * 0.61, 0.16, 0.1)
        d = d + 0.13 * (1 + 0.3 * p["ear_size"]) * _g(
            phi, theta, s * PI / 2, PI * (0.5 + 0.03 * p["ear_position"]), 0.08 * (1 + 0.3 * p["ear_size"]), 0.13
        )
        d = d - 0.02 * (1 + p["nasolabial_depth"]) * _g(phi, theta, s * 0.2, PI * 0.62, 0.03, 0.06)
        d = d + 0.05 * (1 + p["nose_width"]) * 0.5 * _g(
            phi, theta, s * 0.1 * (1 + 0.3 * p["nose_width"]), nt + 0.02, 0.05, 0.04
        )
        d = d + 0.03 * (e["age"]) * _g(phi, theta, s * 0.45, PI * 0.7, 0.12, 0.08)
        d = d + 0.03 * e["smile"] * _g(phi, theta, s * 0.33, PI * 0.585, 0.1, 0.05)
    d = d * asym
    d = d + (0.05 + 0.03 * p["nose_bridge"]) * _g(phi, theta, 0, et + 0.03, 0.06, 0.06)
    d = d + 0.11 * (1 + 0.25 * p["nose_protrusion"]) * _g(
        phi, theta, 0, (et + nt) / 2, 0.055, 0.09 * (1 + 0.25 * p["nose_length"])
    )
    d = d + 0.17 * (1 + 0.3 * p["nose_protrusion"]) * _g(phi, theta, 0, nt, 0.08 * (1 + 0.3 * p["nose_width"]), 0.06)
    d = d - 0.015 * (1 + p["philtrum_depth"]) * _g(phi, theta, 0, mt - 0.05, 0.03, 0.025)
    lips = 0.035 * (1 + 0.5 * p["lip_thickness"])
    d = d + lips * _g(phi, theta, 0, mt - 0.022, 0.2 * (1 + 0.12 * p["mouth_width"]), 0.022)
    d = d + 1.15 * lips * _g(phi, theta, 0, mt + 0.028, 0.19 * (1 + 0.12 * p["mouth_width"]), 0.025)
    d = d + 0.07 * (1 + 0.5 * p["chin_protrusion"]) * _g(phi, theta, 0, ct, 0.16, 0.07)
    front = torch.sigmoid((torch.cos(phi) - 0.1) / 0.1)
    d = d * front + torch.where(phi.abs() > 1.2, d, torch.zeros_like(d)) * (1 - front)  # ears live at the sides
    x, y, z = nx * (rx + d), ny * (ry + d), nz * (rz + d)
    drop = 0.12 * e["mouth_open"] * torch.sigmoid((theta - mt) / 0.015) * front  # jaw opens below the lip line
    y = y - drop
    neck = torch.sigmoid((theta - PI * 0.84) / 0.03)  # the bottom cap becomes a neck
    x = x * (1 - 0.45 * neck)
    z = z * (1 - 0.45 * neck) - 0.1 * neck
    y = y - 0.6 * neck * (theta - PI * 0.84).clamp_min(0)
    return torch.stack([x, y, z], -1)


def landmark_coords(ident: dict[str, torch.Tensor], expr: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(φ, θ) [B, 5] of eyes, nose tip, mouth corners — image-left first (subject's right, x < 0)."""
    L = Layout(ident, expr)
    mw = L.mouth_w * 0.95
    phi = torch.stack([-L.eye_p, L.eye_p, torch.zeros_like(mw), -mw, mw], 1)
    corner_t = L.mouth_curve(mw[:, None])[:, 0]
    theta = torch.stack([L.eye_t, L.eye_t, L.nose_t, corner_t, corner_t], 1)
    return phi, theta


def albedo(
    phi: torch.Tensor,
    theta: torch.Tensor,
    ident: dict[str, torch.Tensor],
    expr: dict[str, torch.Tensor],
    noise: torch.Tensor,
    glasses: torch.Tensor,
    hat: torch.Tensor,
    hat_color: torch.Tensor,
) -> torch.Tensor:
    """Procedural colour [B, H, W, 3] at per-pixel coordinates [B, H, W].

    ``noise`` [B, 2, h, w] is each identity's fixed skin/hair noise field, sampled by
    (φ, θ); accessories are per-image flags in [0, 1].
    """
    B = phi.shape[0]
    p = {k: v.view(B, 1, 1) for k, v in ident.items()}
    e = {k: v.view(B, 1, 1) for k, v in expr.items()}
    L = Layout(ident, expr)
    et, ep = L.eye_t.view(B, 1, 1), L.eye_p.view(B, 1, 1)
    grid = torch.stack([phi / PI, theta / PI * 2 - 1], -1)
    n = torch.nn.functional.grid_sample(noise, grid, align_corners=False, padding_mode="border")
    fine, coarse = n[:, 0][..., None], n[:, 1][..., None]
    tone = (p["skin_tone"] + 1) / 2
    light, dark = torch.tensor([0.95, 0.78, 0.66]), torch.tensor([0.34, 0.21, 0.14])
    skin = light * (1 - tone[..., None]) + dark * tone[..., None]
    skin = skin * (1 + 0.05 * p["skin_redness"][..., None] * torch.tensor([1.0, -0.6, -0.6]))
    skin = skin * (1 + (0.04 + 0.03 * p["skin_texture"][..., None]) * fine + 0.05 * coarse)
    blush = cast(
        torch.Tensor, sum(_g(phi, theta, s * 0.42, PI * 0.6, 0.14, 0.07) for s in (-1.0, 1.0))
    )  # a sum of tensors
    skin = skin * (1 + 0.08 * blush[..., None] * torch.tensor([0.4, -0.3, -0.3]))
    wrinkles = e["age"] * (0.5 + 0.5 * torch.sin(theta * 140)) * _g(phi, theta, 0, PI * 0.33, 0.5, 0.06)
    wrinkles = wrinkles + e["age"] * sum(_g(phi, theta, s * (ep + 0.14), et, 0.04, 0.04) for s in (-1.0, 1.0)) * (
        0.5 + 0.5 * torch.sin(theta * 200 + phi * 50)
    )
    col = skin * (1 - 0.12 * wrinkles[..., None])
    col = col * (1 - 0.25 * torch.sigmoid((theta - PI * 0.8) / 0.03)[..., None])  # shadowed neck

    def paint(c: torch.Tensor, mask: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
        m = mask.clamp(0, 1)[..., None]
        return c * (1 - m) + colour.view(B, 1, 1, 3) * m if colour.dim() == 2 else c * (1 - m) + colour * m

    # lips and the open mouth
    curve = L.mouth_curve(phi.view(B, -1)).view_as(phi)
    u = (phi / L.mouth_w.view(B, 1, 1)).clamp(-1.2, 1.2)
    span = (1 - u**2).clamp_min(0)
    lip_h = 0.028 * (1 + 0.4 * p["lip_thickness"]) * span.sqrt()
    lip_rgb = torch.stack(
        [0.62 + 0.1 * ident["lip_color"], 0.30 - 0.05 * ident["lip_color"], 0.30 - 0.02 * ident["lip_color"]], -1
    ) * (0.7 + 0.3 * (1 - tone.view(B, 1)))
    inside = (span > 0).float()
    col = paint(col, torch.sigmoid((lip_h - (theta - curve).abs()) / 0.004) * inside, lip_rgb)
    gap = 0.5 * 0.05 * e["mouth_open"] * span.sqrt()
    col = paint(col, torch.sigmoid((gap - (theta - curve).abs()) / 0.003) * inside, torch.tensor([0.12, 0.04, 0.04]))
    # eyes: sclera, iris, pupil, then eyelid closure
    iris_rgb = _pal(IRIS_PALETTE, ident["eye_color"])
    closure = e["eye_closure"]
    for s in (-1.0, 1.0):
        dx, dy = (phi - s * ep) / L.eye_w.view(B, 1, 1), (theta - et) / 0.032
        r2 = dx**2 + dy**2
        col = paint(col, torch.sigmoid((1 - r2) / 0.08), torch.tensor([0.92, 0.90, 0.88]))
        ir = ((phi - s * ep) ** 2 + (theta - et) ** 2).sqrt()
        col = paint(col, torch.sigmoid((0.028 - ir) / 0.003) * (r2 < 1.05), iris_rgb)
        col = paint(col, torch.sigmoid((0.011 - ir) / 0.002) * (r2 < 1.05), torch.tensor([0.03, 0.03, 0.03]))
        lid = (r2 < 1.15) & (dy < -1 + 2 * closure)
        col = paint(col, lid.float(), skin * 0.85)
        col = paint(col, torch.sigmoid((0.06 - (r2 - 1).abs()) / 0.02) * (dy < 0), torch.tensor([0.1, 0.07, 0.06]))
        # eyebrow: an arched band above the eye
        bx = (phi - s * ep) / 0.15
        arch = 0.018 * (1 + p["eyebrow_arch"]) * (1 - bx**2)
        bt = L.brow_t.view(B, 1, 1) - arch
        thick = 0.011 * (1 + 0.6 * p["eyebrow_thickness"]) * (1 - 0.5 * bx.abs())
        brow = torch.sigmoid((thick - (theta - bt).abs()) / 0.003) * (bx.abs() < 1)
        brow_rgb = _pal(HAIR_PALETTE, ident["hair_color"]) * (1.2 - 0.5 * (ident["eyebrow_darkness"][:, None] + 1) / 2)
        col = paint(col, brow * (0.75 + 0.25 * fine.squeeze(-1)), brow_rgb)
    # hair, greying with age
    hair_rgb = _pal(HAIR_PALETTE, ident["hair_color"]) * (0.8 + 0.3 * ident["hair_lightness"][:, None])
    grey = (0.7 * e["age"]).view(B, 1, 1, 1)
    strands = 0.85 + 0.15 * torch.sin(phi * 90 + 6 * coarse.squeeze(-1))[..., None]
    hairline = PI * (0.26 + 0.05 * p["hairline"]) + 0.18 * (phi.abs() / 1.2).clamp(max=1) ** 2
    back = PI * (0.62 + 0.12 * p["hair_length"])
    hair_mask = torch.sigmoid((hairline - theta) / 0.02) + torch.sigmoid((phi.abs() - 1.45) / 0.08) * torch.sigmoid(
        (back - theta) / 0.03
    )
    hair_col = (hair_rgb.view(B, 1, 1, 3) * (1 - grey) + torch.tensor([0.7, 0.7, 0.7]) * grey) * strands
    col = paint(col, hair_mask, hair_col)
    # facial hair: beard (style > 0) or moustache only
    amount = (p["facial_hair"] - 0.2).clamp_min(0) / 0.8
    stubble = (0.6 + 0.4 * fine.squeeze(-1)).clamp(0, 1)
    beard = (
        torch.sigmoid((theta - curve - 0.035) / 0.01) * torch.sigmoid((PI * 0.84 - theta) / 0.02) * (phi.abs() < 1.3)
    )
    beard = beard * (p["facial_hair_style"] > 0)
    moustache = torch.sigmoid((0.02 - (theta - (curve - 0.045)).abs()) / 0.005) * (
        phi.abs() < L.mouth_w.view(B, 1, 1) * 1.1
    )
    col = paint(col, (beard + moustache).clamp(0, 1) * amount * stubble, hair_col * 0.9)
    # accessories
    hat_mask = hat.view(B, 1, 1) * torch.sigmoid((PI * 0.24 - theta) / 0.01)
    col = paint(col, hat_mask, hat_color.view(B, 1, 1, 3).expand_as(col))
    for s in (-1.0, 1.0):
        dx, dy = (phi - s * ep) / 0.13, (theta - et) / 0.075
        r = (dx**2 + dy**2).sqrt()
        frame = torch.sigmoid((0.12 - (r - 1).abs()) / 0.03)
        col = paint(col, glasses.view(B, 1, 1) * frame, torch.tensor([0.05, 0.05, 0.06]))
        col = col * (1 - 0.15 * glasses.view(B, 1, 1, 1) * (r < 1)[..., None])
    bridge = torch.sigmoid((0.012 - (theta - et + 0.02).abs()) / 0.004) * (phi.abs() < ep - 0.12)
    col = paint(col, glasses.view(B, 1, 1) * bridge, torch.tensor([0.05, 0.05, 0.06]))
    return col.clamp(0, 1)
