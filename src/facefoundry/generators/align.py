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
