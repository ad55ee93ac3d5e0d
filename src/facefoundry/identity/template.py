"""The insightface 5-point alignment template and the similarity that maps onto it."""

from __future__ import annotations

import torch

# left eye, right eye, nose tip, left mouth corner, right mouth corner (image left/right), 112x112
ARCFACE_TEMPLATE_112 = torch.tensor(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)


def template(size: int) -> torch.Tensor:
    """The template scaled to a ``size``×``size`` crop."""
    return ARCFACE_TEMPLATE_112 * (size / 112.0)


def similarity_fit(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched Umeyama: scale·rotation ``A`` [B,2,2] and ``t`` [B,2] minimising |A·src + t − dst|².

    The same least-squares similarity insightface's ``norm_crop`` estimates, so
    rendered faces come out aligned as real aligned crops are.
    """
    dst = dst.expand_as(src)
    mu_s, mu_d = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    s, d = src - mu_s, dst - mu_d
    a = (s * d).sum((1, 2))  # Σ sx·dx + sy·dy
    b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(1)  # Σ sx·dy − sy·dx
    var = (s**2).sum((1, 2)).clamp_min(1e-12)
    c, k = a / var, b / var
    A = torch.stack([torch.stack([c, -k], -1), torch.stack([k, c], -1)], -2)
    t = mu_d.squeeze(1) - torch.einsum("bij,bj->bi", A, mu_s.squeeze(1))
    return A, t


def warp_similarity(
    images: torch.Tensor, A: torch.Tensor, t: torch.Tensor, out_size: int | tuple[int, int], mode: str = "bilinear"
) -> torch.Tensor:
    """Differentiable warp: output pixel ``p`` samples the input at ``A⁻¹(p − t)``.

    ``images`` is float ``[B,C,H,W]``; ``A`` ``[B,2,2]`` (or ``[2,2]``) and ``t`` ``[B,2]`` map *input*
    pixel coordinates (pixel centres at integers, as OpenCV and dlib use) to output coordinates, as
    :func:`similarity_fit` returns them. Pixels outside the input are zero.
    """
    if isinstance(out_size, int):
        out_size = (out_size, out_size)
    oh, ow = out_size
    B, _, H, W = images.shape
    A = A.to(images).expand(B, 2, 2)
    t = t.to(images).expand(B, 2)
    Ainv = torch.linalg.inv(A)
    # normalised output coords (align_corners=False) -> output pixels -> input pixels -> normalised input
    ys, xs = torch.meshgrid(
        torch.arange(oh, dtype=images.dtype, device=images.device),
        torch.arange(ow, dtype=images.dtype, device=images.device),
        indexing="ij",
    )
    out_px = torch.stack([xs, ys], -1).reshape(1, -1, 2)  # [1, oh*ow, 2]
    in_px = torch.einsum("bij,bnj->bni", Ainv, out_px - t[:, None, :])
    scale = torch.tensor([2.0 / W, 2.0 / H], dtype=images.dtype, device=images.device)
    grid = ((in_px + 0.5) * scale - 1).reshape(B, oh, ow, 2)
    return torch.nn.functional.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)
