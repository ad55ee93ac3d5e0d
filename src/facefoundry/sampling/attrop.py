"""AttrOP (attribute operation): optimise identity vectors until their images meet pose/quality targets.

Follows the official ``gen_image`` loop (HaiyuWu/Vec2Face ``model_vec2face.py``): the vector
is optimised with Adam (lr 0.1) on

    100 · (1 − cos(encoder(decode(v)), v_id)) + max(0, q_target − quality) + |yaw_target − |yaw||

where ``v_id`` is the *target identity vector* (the official ``class_rep``, e.g. the identity
centre, while ``v`` starts from a perturbed sample; without one, the starting vector itself),
``quality`` is the quality score of the image (the official one is MagFace's feature norm) and
``yaw`` the estimated yaw of the image in degrees, clipped to ±90 (so the target is a
magnitude: either side counts). A target is met when 1 − cos ≤ 1 − ``min_identity`` (official
0.3), the quality hinge ≤ ``quality_tolerance`` (official 1) and the yaw error ≤
``yaw_tolerance`` (official 5°).

The official loop only stops once the batch *mean* of every term meets its target, so an
unreachable target loops forever. Here each vector stops (and is frozen) at the first
evaluation where it meets all its targets, and the whole run stops after ``max_iters`` Adam
steps; :class:`AttrOPResult` records per vector what was reached and whether each target was
met.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from facefoundry.errors import FaceFoundryError

Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class AttrOPTargets:
    """What AttrOP aims for. ``yaw``: target |yaw| in degrees (scalar or one per vector), ``None`` = no pose term."""

    yaw: float | Sequence[float] | None = None
    yaw_tolerance: float = 5.0
    min_identity: float = 0.7  # cosine between the image's identity and the target identity (official 1 − 0.3)
    quality: float | None = None  # target quality score (official 27 for MagFace norms); None = no quality term
    quality_tolerance: float = 1.0
    identity_weight: float = 100.0


@dataclass
class AttrOPResult:
    """Per vector: the optimised vector, its final image and what it reached."""

    vectors: torch.Tensor  # [B, D]
    images: torch.Tensor  # [B, 3, S, S] in [0, 1]
    identity: np.ndarray  # [B] cosine(encoder(image), target identity)
    yaw: np.ndarray  # [B] estimated yaw in degrees (NaN without pose_fn)
    quality: np.ndarray  # [B] quality score (NaN without quality_fn)
    iterations: np.ndarray  # [B] Adam steps applied to the vector
    identity_met: np.ndarray  # [B] bool
    yaw_met: np.ndarray  # [B] bool (True when there is no yaw target)
    quality_met: np.ndarray  # [B] bool (True when there is no quality target)

    @property
    def converged(self) -> np.ndarray:
        met: np.ndarray = self.identity_met & self.yaw_met & self.quality_met
        return met


def attrop(
    vectors: torch.Tensor,
    decode: Fn,
    encoder: Fn,
    targets: AttrOPTargets | None = None,
    identity: torch.Tensor | None = None,
    pose_fn: Fn | None = None,
    quality_fn: Fn | None = None,
    lr: float = 0.1,
    max_iters: int = 100,
) -> AttrOPResult:
    """Run AttrOP on a batch of vectors [B, D].

    ``decode``: vectors → images [B, 3, S, S] RGB in [0, 1] (differentiable, e.g. a Vec2Face
    generator); ``encoder``: images → identity vectors (differentiable; normalised here);
    ``pose_fn``: images → yaw [B] in degrees; ``quality_fn``: images → quality [B]. Both are
    required only for their targets. Never runs more than ``max_iters`` Adam steps.
    """
    t = targets or AttrOPTargets()
    if vectors.ndim != 2:
        raise FaceFoundryError(f"AttrOP: vectors must be [B, D], got shape {tuple(vectors.shape)}")
    if max_iters < 0:
        raise FaceFoundryError(f"AttrOP: max_iters={max_iters} must be ≥ 0")
    if t.yaw is not None and pose_fn is None:
        raise FaceFoundryError("AttrOP: a yaw target needs a pose_fn (images → yaw in degrees)")
    if t.quality is not None and quality_fn is None:
        raise FaceFoundryError("AttrOP: a quality target needs a quality_fn (images → quality score)")
    B = len(vectors)
    v = vectors.detach().clone().float().requires_grad_(True)
    target_id = F.normalize((vectors if identity is None else identity).detach().float().to(v.device), dim=1)
    if target_id.shape != v.shape:
        raise FaceFoundryError(f"AttrOP: identity {tuple(target_id.shape)} must match vectors {tuple(v.shape)}")
    yaw_t = None if t.yaw is None else torch.as_tensor(t.yaw, dtype=torch.float32, device=v.device).expand(B)
    opt = torch.optim.Adam([v], lr=lr)
    active = torch.ones(B, dtype=torch.bool, device=v.device)
    iters = torch.zeros(B, dtype=torch.long)
    nan = torch.full((B,), float("nan"))
    rec = {"identity": nan.clone(), "yaw": nan.clone(), "quality": nan.clone()}
    met = {k: torch.zeros(B, dtype=torch.bool) for k in ("identity", "yaw", "quality")}
    images = None
    for step in range(max_iters + 1):
        imgs = decode(v)
        sim = F.cosine_similarity(F.normalize(encoder(imgs), dim=1), target_id, dim=1)
        loss = t.identity_weight * (1 - sim)
        ok_id = (1 - sim) <= 1 - t.min_identity
        ok_yaw, ok_q = torch.ones_like(ok_id), torch.ones_like(ok_id)
        yaw = q = None
        if quality_fn is not None:
            q = quality_fn(imgs).reshape(B)
            if t.quality is not None:
                hinge = (t.quality - q).clamp_min(0)
                loss = loss + hinge
                ok_q = hinge <= t.quality_tolerance
        if pose_fn is not None:
            yaw = pose_fn(imgs).reshape(B)
            if yaw_t is not None:
                err = (yaw_t - yaw.clamp(-90, 90).abs()).abs()
                loss = loss + err
                ok_yaw = err <= t.yaw_tolerance
        with torch.no_grad():  # record the rows still being optimised (frozen rows keep their values)
            a = active.cpu()
            rec["identity"][a] = sim.detach().float().cpu()[a]
            if yaw is not None:
                rec["yaw"][a] = yaw.detach().float().cpu()[a]
            if q is not None:
                rec["quality"][a] = q.detach().float().cpu()[a]
            for k, m in (("identity", ok_id), ("yaw", ok_yaw), ("quality", ok_q)):
                met[k][a] = m.cpu()[a]
            images = (
                imgs.detach().clone()
                if images is None
                else torch.where(active[:, None, None, None], imgs.detach(), images)
            )
            active &= ~(ok_id & ok_yaw & ok_q)
        if not active.any() or step == max_iters:
            break
        opt.zero_grad()
        loss[active].sum().backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
        snap = v.detach().clone()
        opt.step()
        with torch.no_grad():  # Adam's momentum would still move finished rows: put them back
            v[~active] = snap[~active]
        iters[active.cpu()] += 1
    assert images is not None  # range(max_iters + 1) with max_iters ≥ 0: the loop ran at least once
    return AttrOPResult(
        v.detach(),
        images,
        rec["identity"].numpy(),
        rec["yaw"].numpy(),
        rec["quality"].numpy(),
        iters.numpy(),
        met["identity"].numpy(),
        met["yaw"].numpy(),
        met["quality"].numpy(),
    )
