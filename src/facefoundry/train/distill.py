"""Knowledge distillation as a training regime, after SynthDistill (Otroshi Shahreza, George and Marcel, IJCB 2023).

The FR student trains on generated images only, to match a pretrained teacher's embedding of each image:
the teacher's flip-summed, unit vector (its view of the image and of its mirror, summed, normalised, as the
verification protocol embeds). ``train.objective``:

- ``labels``: the margin head on the identity labels (the platform's default; nothing here is used);
- ``distill``: the distillation loss alone — no labels, no head;
- ``both``: the margin head's loss + ``train.distill.weight`` × the distillation loss.

The teacher's vectors are computed once per dataset and kept in the identity-vector store (keyed by each
image's sha256, the teacher's spec and "flip-summed"), so a second seed, a resumed run or a sweep trial on
the same dataset embeds nothing. The student's embedding takes the teacher's dimension. A flip-summed
teacher vector is the same for an image and its mirror, so the trainer's random flips keep their target.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from facefoundry.config.schema_training import TrainCfg
from facefoundry.data.sources import FaceSource
from facefoundry.errors import FaceFoundryError
from facefoundry.identity.base import IdentityEncoder
from facefoundry.train.regime import regime as regime  # re-exported: the trainer and compare name it here


class FlipSummed(IdentityEncoder):
    """An encoder's flip-summed unit vectors: ``unit(f(x) + f(mirror(x)))`` — a distinct store entry."""

    def __init__(self, inner: IdentityEncoder):
        super().__init__()
        self.inner = inner
        self.name, self.dim, self.input = inner.name, inner.dim, inner.input
        self.differentiable = inner.differentiable

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.inner(images) + self.inner(images.flip(-1)), dim=1)

    def spec(self) -> dict:
        return {**self.inner.spec(), "flip_summed": True}

    @property
    def device(self) -> torch.device:
        return self.inner.device


def teacher_vectors(source: FaceSource, teacher: IdentityEncoder, batch_size: int, desc: str = "teacher") -> np.ndarray:
    """The teacher's flip-summed unit vector of every image of ``source``, ``[N, dim]`` float32 (cached per image)."""
    from facefoundry.identity.store import embed_rows, source_keys

    rows = np.arange(len(source))
    return embed_rows(source.load, rows, FlipSummed(teacher), batch_size, desc, source_keys(source, rows))


def embed_share(source: FaceSource, teacher: IdentityEncoder, batch_size: int, desc: str) -> None:
    """Under DDP, each rank embeds its share of the images (rows ``rank, rank + W, …``) into the store and waits for
    the others, so every rank then reads all the vectors rather than each embedding the whole dataset."""
    from facefoundry.identity.store import embed_rows, source_keys
    from facefoundry.train import distributed

    if not distributed.active():
        return
    import torch.distributed as dist

    share = np.arange(dist.get_rank(), len(source), dist.get_world_size())
    embed_rows(source.load, share, FlipSummed(teacher), batch_size, desc, source_keys(source, share))
    distributed.barrier()


def centre(vectors: np.ndarray) -> np.ndarray:
    """Unit vectors of what tells the images apart: each minus the dataset's mean vector, normalised.

    dlib's unit vectors of different faces sit at cosine ≈ 0.9 (a large shared component): a student matching
    them raw reaches a teacher cosine of 0.89 on its training images by learning the mean alone, and verifies
    the real benchmark at chance (52.3 % on one seed, measured). Centred, different faces sit near cosine 0, as
    in the ArcFace-family teachers SynthDistill used, and the target is the identity part.
    """
    v = vectors - vectors.mean(0, keepdims=True)
    return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def vectors_digest(vectors: np.ndarray) -> str:
    """What the student learns towards, as a short hash (the teacher's spec and weights and the data in one)."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(vectors, np.float32).tobytes()).hexdigest()[:16]


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean over the batch of the student's distance to the teacher's unit vectors.

    ``mse``: ‖unit(s) − t‖² (SynthDistill's loss on normalised embeddings); ``cosine``: 1 − cos(s, t).
    On unit vectors the two differ by a factor of 2 (‖a − b‖² = 2 − 2·cos); both are offered because a
    teacher vector that is not unit (an ONNX teacher's raw output) makes them differ.
    """
    s = F.normalize(student.float(), dim=1)
    t = teacher.float()
    if kind == "mse":
        return (s - t).pow(2).sum(1).mean()
    if kind == "cosine":
        return (1 - (s * F.normalize(t, dim=1)).sum(1)).mean()
    raise FaceFoundryError(f"train.distill.loss: {kind!r} is not one of mse, cosine")


def load_teacher(spec: str, device: torch.device, log: Callable[[str], None]) -> IdentityEncoder:
    """``train.teacher``: a registered identity encoder (dlib, sface) or a local path (.onnx, .dat, model folder)."""
    from facefoundry.identity import load_encoder

    teacher = load_encoder(spec)
    log(f"train.teacher {spec}: {teacher.name}, {teacher.dim}-d, flip-summed unit vectors")
    return teacher.to(device).eval()


def teacher_targets(
    t: TrainCfg, source: FaceSource, device: torch.device, mixer: object, log: Callable[[str], None]
) -> tuple[torch.Tensor | None, dict]:
    """``train.objective: distill | both``: the teacher's flip-summed unit vector of every image (computed once
    per dataset, then read from the identity-vector store) and what to record about it; labels: nothing."""
    if t.objective == "labels":
        return None, {}
    if t.domain_mixup.dataset is not None:
        raise FaceFoundryError(
            f"train.objective {t.objective}: distillation with train.domain_mixup is not supported "
            "(the mixed images have no teacher vectors); set train.domain_mixup.dataset=null"
        )
    if mixer is not None:
        raise FaceFoundryError(f"train.objective {t.objective}: a batch mixer's images have no teacher vectors")
    teacher = load_teacher(t.teacher, device, log)
    desc = f"teacher {teacher.name} on {source.root.name}"
    embed_share(source, teacher, t.distill.batch_size, desc)
    vectors = teacher_vectors(source, teacher, t.distill.batch_size, desc=desc)
    if t.distill.centred:
        vectors = centre(vectors)
    info = {
        "objective": t.objective,
        "teacher": t.teacher,
        "teacher_name": teacher.name,
        "dim": int(teacher.dim),
        "loss": t.distill.loss,
        "weight": t.distill.weight,
        "centred": t.distill.centred,
        "digest": vectors_digest(vectors),
    }
    if t.backbone.embedding_size != teacher.dim and t.init is None:
        log(
            f"train.objective {t.objective}: the student's embedding takes the teacher's {teacher.dim} "
            f"dimensions (train.backbone.embedding_size {t.backbone.embedding_size} is not used)"
        )
    return torch.from_numpy(vectors), info
