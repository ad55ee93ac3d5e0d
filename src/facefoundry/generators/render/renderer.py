"""Render aligned faces of parametric identities under sampled pose, expression, light and camera.

Faces come out already aligned: the five landmarks (eye centres, nose tip, mouth
corners) are projected and a least-squares similarity maps them onto the insightface
template before rasterisation, exactly the warp real aligned crops went through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from facefoundry.config import Range, RenderCfg
from facefoundry.data.images import jpeg_roundtrip
from facefoundry.generators.render.head import EXPRESSION, IDENTITY, PI, albedo, landmark_coords, surface
from facefoundry.generators.render.raster import interpolate, rasterize
from facefoundry.identity.template import similarity_fit, template

VARIATION_RANGES = [
    "yaw",
    "pitch",
    "roll",
    "smile",
    "mouth_open",
    "brows",
    "eye_closure",
    "age",
    "light_azimuth",
    "light_elevation",
    "light_intensity",
    "ambient",
    "color_temperature",
    "camera_distance",
    "blur_sigma",
    "noise_std",
    "jpeg_quality",
]
BACKGROUNDS = ["flat", "gradient", "noise"]


def _warped(n: int, lo: float, hi: float, centre: float, width: float, boost: float) -> np.ndarray:
    """``n`` samples in [lo, hi], denser near ``centre`` (more triangles where the face is)."""
    x = np.linspace(lo, hi, 4096)
    cdf = np.cumsum(1 + boost * np.exp(-(((x - centre) / width) ** 2)))
    cdf = (cdf - cdf[0]) / (cdf[-1] - cdf[0])
    return np.interp(np.linspace(0, 1, n), cdf, x)


def kelvin_rgb(kelvin: torch.Tensor) -> torch.Tensor:
    """Approximate light colour of a black body (Tanner Helland's fit), normalised to green = 1."""
    t = kelvin / 100
    r = torch.where(t <= 66, torch.ones_like(t), (329.7 * (t - 60).clamp_min(1e-3) ** -0.1332) / 255)
    g = torch.where(
        t <= 66, (99.47 * torch.log(t) - 161.12) / 255, (288.12 * (t - 60).clamp_min(1e-3) ** -0.0755) / 255
    )
    b = torch.where(
        t >= 66,
        torch.ones_like(t),
        torch.where(t <= 19, torch.zeros_like(t), (138.52 * torch.log((t - 10).clamp_min(1e-3)) - 305.04) / 255),
    )
    rgb = torch.stack([r, g, b], -1).clamp(0.05, 1)
    return rgb / rgb[..., 1:2]


@dataclass
class Identity:
    """A rendered identity: a point in [-1, 1]^len(IDENTITY) and the seed of its skin/hair noise."""

    vector: np.ndarray
    texture_seed: int

    def as_params(self) -> dict:
        return {"identity": dict(zip(IDENTITY, map(float, self.vector))), "texture_seed": int(self.texture_seed)}


class FaceRenderer:
    def __init__(self, cfg: RenderCfg, image_size: int, device: torch.device | str = "cpu"):
        self.cfg, self.size, self.device = cfg, image_size, torch.device(device)
        self.ss = cfg.supersample
        theta = _warped(cfg.mesh_lat, 0.03 * PI, 0.97 * PI, 0.6 * PI, 0.2 * PI, 2.0)
        phi = _warped(cfg.mesh_lon + 1, -PI, PI, 0.0, 0.8, 3.0)[:-1]
        T, P = np.meshgrid(theta, phi, indexing="ij")
        self.vphi = torch.tensor(P.ravel(), dtype=torch.float32)
        self.vtheta = torch.tensor(T.ravel(), dtype=torch.float32)
        triangles: list[tuple[int, int, int]] = []
        nl, nc = cfg.mesh_lat, cfg.mesh_lon
        for i in range(nl - 1):
            for j in range(nc):
                a, b = i * nc + j, i * nc + (j + 1) % nc
                c, d = a + nc, b + nc
                triangles += [(a, c, b), (b, c, d)]
        faces = torch.tensor(triangles, dtype=torch.long)
        unit = torch.stack(
            [
                torch.sin(self.vtheta) * torch.sin(self.vphi),
                torch.cos(self.vtheta),
                torch.sin(self.vtheta) * torch.cos(self.vphi),
            ],
            -1,
        )
        tri = unit[faces]
        normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        outward = (normal * tri.mean(1)).sum(-1) > 0
        self.faces = torch.where(outward[:, None], faces, faces[:, [0, 2, 1]]).to(self.device)
        self.vphi, self.vtheta = self.vphi.to(self.device), self.vtheta.to(self.device)

    @property
    def num_triangles(self) -> int:
        return len(self.faces)

    # -- sampling ----------------------------------------------------------------------
    def sample_variations(self, n: int, rng: np.random.Generator) -> list[dict]:
        """Per-image nuisance parameters, each drawn from its own range in ``params.yaml``."""
        out = []
        for _ in range(n):
            v: dict[str, Any] = {}
            for name in VARIATION_RANGES:
                r: Range = getattr(self.cfg, name)
                v[name] = float(rng.uniform(r.min, r.max))
            v["glasses"] = bool(rng.random() < self.cfg.glasses_prob)
            v["hat"] = bool(rng.random() < self.cfg.hat_prob)
            v["hat_color"] = rng.uniform(0.05, 0.9, 3).round(4).tolist()
            v["jpeg"] = bool(rng.random() < self.cfg.jpeg_prob)
            v["background"] = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
            v["background_colors"] = rng.uniform(0, 1, 6).round(4).tolist()
            v["background_seed"] = int(rng.integers(2**31))
            v["noise_seed"] = int(rng.integers(2**31))
            out.append(v)
        return out

    def _noise_field(self, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(seed))
        fine = F.avg_pool2d(torch.randn(1, 1, 66, 130, generator=g), 3, 1)
        coarse = F.interpolate(
            torch.randn(1, 1, 6, 12, generator=g), size=(64, 128), mode="bilinear", align_corners=False
        )
        return torch.cat([fine / fine.std(), coarse], 1)[0]

    # -- rendering ---------------------------------------------------------------------
    @torch.no_grad()
    def render(self, identities: list[Identity], variations: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images [B, S, S, 3] and landmarks [B, 5, 2] (pixel coordinates, centre = integer)."""
        dev, B, S, ss = self.device, len(identities), self.size, self.ss
        H = S * ss
        vec = torch.tensor(np.stack([i.vector for i in identities]), dtype=torch.float32, device=dev)
        ident = {k: vec[:, j] for j, k in enumerate(IDENTITY)}
        var = {k: torch.tensor([v[k] for v in variations], dtype=torch.float32, device=dev) for k in VARIATION_RANGES}
        expr = {k: var[k] for k in EXPRESSION}
        verts = surface(self.vphi.expand(B, -1), self.vtheta.expand(B, -1), ident, expr)
        lphi, ltheta = landmark_coords(ident, expr)
        lms = surface(lphi, ltheta, ident, expr)
        R = _rotation(var["yaw"], var["pitch"], var["roll"])
        verts, lms = verts @ R.transpose(1, 2), lms @ R.transpose(1, 2)
        D = var["camera_distance"][:, None]

        def project(p: torch.Tensor) -> torch.Tensor:
            k = D / (D - p[..., 2])
            return torch.stack([p[..., 0] * k, -p[..., 1] * k], -1)

        A, t = similarity_fit(project(lms), (template(S).to(dev) + 0.5) * ss)
        scr = torch.einsum("bij,bvj->bvi", A, project(verts)) + t[:, None]
        lm_img = (torch.einsum("bij,bvj->bvi", A, project(lms)) + t[:, None]) / ss - 0.5
        depth = D - verts[..., 2]
        face_id, bary, mask = rasterize(torch.cat([scr, depth[..., None]], -1), self.faces, H, H)
        normals = _vertex_normals(verts, self.faces)
        attrs = torch.cat(
            [self.vphi.expand(B, -1)[..., None], self.vtheta.expand(B, -1)[..., None], normals, verts], -1
        )
        px = interpolate(attrs, self.faces, face_id, bary)
        noise = torch.stack([self._noise_field(i.texture_seed) for i in identities]).to(dev)
        flags = {k: torch.tensor([float(v[k]) for v in variations], device=dev) for k in ("glasses", "hat")}
        hat_rgb = torch.tensor([v["hat_color"] for v in variations], dtype=torch.float32, device=dev)
        alb = albedo(px[..., 0], px[..., 1], ident, expr, noise, flags["glasses"], flags["hat"], hat_rgb)
        rgb = self._shade(alb, px[..., 2:5], px[..., 5:8], var)
        bg = self._background(variations, H)
        img = torch.where(mask[..., None], rgb, bg).permute(0, 3, 1, 2)
        img = F.avg_pool2d(img, ss) if ss > 1 else img
        img = self._degrade(img, var, variations)
        out = (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        for i, v in enumerate(variations):
            if v["jpeg"]:
                out[i] = jpeg_roundtrip(out[i], round(v["jpeg_quality"]))
        return out, lm_img.cpu().numpy()

    def _shade(self, alb: torch.Tensor, n: torch.Tensor, pos: torch.Tensor, var: dict) -> torch.Tensor:
        n = F.normalize(n, dim=-1)
        az, el = var["light_azimuth"] * math.pi / 180, var["light_elevation"] * math.pi / 180
        light = torch.stack([torch.sin(az) * torch.cos(el), torch.sin(el), torch.cos(az) * torch.cos(el)], -1)
        light = light.view(-1, 1, 1, 3)
        cam = torch.zeros_like(pos)
        cam[..., 2] = var["camera_distance"].view(-1, 1, 1)
        view = F.normalize(cam - pos, dim=-1)
        half = F.normalize(light + view, dim=-1)
        diffuse = (n * light).sum(-1, keepdim=True).clamp_min(0)
        spec = (n * half).sum(-1, keepdim=True).clamp_min(0) ** 24 * 0.12
        colour = kelvin_rgb(var["color_temperature"]).view(-1, 1, 1, 3)
        inten, amb = var["light_intensity"].view(-1, 1, 1, 1), var["ambient"].view(-1, 1, 1, 1)
        return (alb * (amb + inten * diffuse) + spec * inten) * colour

    def _background(self, variations: list[dict], H: int) -> torch.Tensor:
        out = []
        for v in variations:
            c = torch.tensor(v["background_colors"], dtype=torch.float32).view(2, 3)
            if v["background"] == "flat":
                bg = c[0].expand(H, H, 3)
            elif v["background"] == "gradient":
                w = torch.linspace(0, 1, H).view(H, 1, 1)
                bg = (c[0] * (1 - w) + c[1] * w).expand(H, H, 3)
            else:
                g = torch.Generator().manual_seed(v["background_seed"])
                blob = F.interpolate(
                    torch.rand(1, 3, 6, 6, generator=g), size=(H, H), mode="bicubic", align_corners=False
                )[0].permute(1, 2, 0)
                bg = c[0] * 0.5 + 0.5 * blob
            out.append(bg)
        return torch.stack(out).to(self.device).clamp(0, 1)

    def _degrade(self, img: torch.Tensor, var: dict, variations: list[dict]) -> torch.Tensor:
        B = img.shape[0]
        sig = var["blur_sigma"].clamp_min(1e-3)
        k = 5
        ax = torch.arange(k, device=img.device, dtype=torch.float32) - k // 2
        g1 = torch.exp(-0.5 * (ax[None] / sig[:, None]) ** 2)
        g1 = g1 / g1.sum(1, keepdim=True)
        ker = (g1[:, :, None] * g1[:, None, :]).repeat_interleave(3, 0)[:, None]  # B*3,1,k,k
        img = F.conv2d(
            F.pad(img.reshape(1, B * 3, *img.shape[2:]), (k // 2,) * 4, mode="replicate"), ker, groups=B * 3
        ).view_as(img)
        noise = torch.stack(
            [torch.randn(img.shape[1:], generator=torch.Generator().manual_seed(v["noise_seed"])) for v in variations]
        ).to(img.device)
        return img + noise * var["noise_std"].view(B, 1, 1, 1)


def _rotation(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """R = Rz(roll) · Rx(pitch) · Ry(yaw), angles in degrees, [B, 3, 3]."""
    y, p, r = (a * math.pi / 180 for a in (yaw, pitch, roll))
    one, zero = torch.ones_like(y), torch.zeros_like(y)

    def m(rows: list[list[torch.Tensor]]) -> torch.Tensor:
        return torch.stack([torch.stack(row, -1) for row in rows], -2)

    Ry = m([[torch.cos(y), zero, torch.sin(y)], [zero, one, zero], [-torch.sin(y), zero, torch.cos(y)]])
    Rx = m([[one, zero, zero], [zero, torch.cos(p), -torch.sin(p)], [zero, torch.sin(p), torch.cos(p)]])
    Rz = m([[torch.cos(r), -torch.sin(r), zero], [torch.sin(r), torch.cos(r), zero], [zero, zero, one]])
    return Rz @ Rx @ Ry


def _vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    tri = verts[:, faces]
    fn = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0])
    vn = torch.zeros_like(verts)
    for k in range(3):
        vn.index_add_(1, faces[:, k], fn)
    return F.normalize(vn, dim=-1)
