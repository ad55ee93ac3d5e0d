"""A batched z-buffer triangle rasteriser in torch.

Every visible triangle proposes the pixels of its bounding box; an edge-function
test keeps those inside, a scatter-min on depth resolves visibility, and the winners'
barycentrics interpolate any per-vertex attribute. Deterministic, CPU or GPU.
"""

from __future__ import annotations

import torch


def rasterize(
    verts: torch.Tensor, faces: torch.Tensor, height: int, width: int, max_candidates: int = 6_000_000
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rasterise screen-space triangles.

    verts: [B, V, 3] with x, y in pixels (pixel centres at +0.5) and z = depth (smaller is nearer).
    faces: [F, 3] vertex indices, counter-clockwise when front-facing on screen (y down).
    Returns ``face_id`` [B, H, W] (−1 for background), ``bary`` [B, H, W, 3], ``mask`` [B, H, W].
    """
    B, dev = verts.shape[0], verts.device
    tri = verts[:, faces]  # B, F, 3, 3
    p0, p1, p2 = tri[..., 0, :2], tri[..., 1, :2], tri[..., 2, :2]
    area = (p1[..., 0] - p0[..., 0]) * (p2[..., 1] - p0[..., 1]) - (p1[..., 1] - p0[..., 1]) * (p2[..., 0] - p0[..., 0])
    lo = torch.floor(tri[..., :2].amin(2) - 0.5).clamp_min(0)
    hi = torch.ceil(tri[..., :2].amax(2) - 0.5)
    hi = torch.minimum(hi, torch.tensor([width - 1.0, height - 1.0], device=dev))
    visible = (area < -1e-9) & (hi >= lo).all(-1)  # y-down screen: front faces have negative area
    b_idx, f_idx = visible.nonzero(as_tuple=True)
    zbuf = torch.full((B * height * width,), float("inf"), device=dev)
    best = torch.full((B * height * width,), -1, dtype=torch.long, device=dev)
    if len(b_idx) == 0:
        return (
            best.view(B, height, width),
            torch.zeros(B, height, width, 3, device=dev),
            best.view(B, height, width) >= 0,
        )
    span = (hi - lo)[b_idx, f_idx].amax(-1).long() + 1
    cand_pix: list[torch.Tensor] = []
    cand_tri: list[torch.Tensor] = []
    cand_bary: list[torch.Tensor] = []
    K = 2
    while True:  # bucket triangles by box size so a few big ones don't inflate every candidate set
        sel = ((span <= K) & (span > K // 2)) if K > 2 else (span <= K)
        ids = sel.nonzero().flatten()
        for s in range(0, len(ids), max(1, max_candidates // (K * K))):
            chunk = ids[s : s + max(1, max_candidates // (K * K))]
            _candidates(chunk, b_idx, f_idx, lo, hi, p0, p1, p2, area, K, height, width, cand_pix, cand_tri, cand_bary)
        if int(span.max()) <= K:
            break
        K *= 2
    pix_id, tri_id, bary = torch.cat(cand_pix), torch.cat(cand_tri), torch.cat(cand_bary)
    z = tri[b_idx[tri_id], f_idx[tri_id], :, 2]
    depth = (bary * z).sum(-1)
    zbuf.scatter_reduce_(0, pix_id, depth, reduce="amin")
    win = depth <= zbuf[pix_id]
    best.scatter_reduce_(0, pix_id[win], tri_id[win], reduce="amax")  # ties: highest candidate index
    chosen = win & (best[pix_id] == tri_id)
    bary_img = torch.zeros(B * height * width, 3, device=dev)
    bary_img[pix_id[chosen]] = bary[chosen]
    face_img = torch.full((B * height * width,), -1, dtype=torch.long, device=dev)
    face_img[pix_id[chosen]] = f_idx[tri_id[chosen]]
    face_img = face_img.view(B, height, width)
    return face_img, bary_img.view(B, height, width, 3), face_img >= 0


def interpolate(attrs: torch.Tensor, faces: torch.Tensor, face_id: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """Per-pixel attributes [B, H, W, A] from per-vertex ``attrs`` [B, V, A]."""
    B = face_id.shape[0]
    fid = face_id.clamp_min(0)
    vidx = faces[fid]  # B, H, W, 3
    b = torch.arange(B, device=attrs.device)[:, None, None, None].expand_as(vidx)
    vals = attrs[b, vidx]  # B, H, W, 3, A
    return (vals * bary[..., None]).sum(-2)


def _candidates(chunk, b_idx, f_idx, lo, hi, p0, p1, p2, area, K, height, width, cand_pix, cand_tri, cand_bary):
    """Pixels of a KxK box per triangle of ``chunk`` that pass the edge-function test."""
    dev = lo.device
    offs = torch.stack(torch.meshgrid(torch.arange(K, device=dev), torch.arange(K, device=dev), indexing="xy"), -1)
    offs = offs.reshape(-1, 2).float()
    bi, fi = b_idx[chunk], f_idx[chunk]
    pix = lo[bi, fi][:, None, :] + offs[None]  # T, K*K, 2
    inside_box = (pix <= hi[bi, fi][:, None, :]).all(-1)
    c = pix + 0.5
    a0, a1, a2 = p0[bi, fi][:, None], p1[bi, fi][:, None], p2[bi, fi][:, None]
    inv = 1.0 / area[bi, fi][:, None]
    w0 = (
        (a1[..., 0] - c[..., 0]) * (a2[..., 1] - c[..., 1]) - (a1[..., 1] - c[..., 1]) * (a2[..., 0] - c[..., 0])
    ) * inv
    w1 = (
        (a2[..., 0] - c[..., 0]) * (a0[..., 1] - c[..., 1]) - (a2[..., 1] - c[..., 1]) * (a0[..., 0] - c[..., 0])
    ) * inv
    w2 = 1.0 - w0 - w1
    inside = inside_box & (w0 >= -1e-6) & (w1 >= -1e-6) & (w2 >= -1e-6)
    t, k = inside.nonzero(as_tuple=True)
    px = pix[t, k].long()
    cand_pix.append((bi[t] * height + px[:, 1]) * width + px[:, 0])
    cand_tri.append(chunk[t])
    cand_bary.append(torch.stack([w0[t, k], w1[t, k], w2[t, k]], -1))
