"""The FR training loop: one CPU process by default, CUDA + AMP when available, DDP when launched in several
processes (:mod:`facefoundry.train.distributed`: each rank's GPU, what holds across world sizes).

Randomness (shuffle order, flips, dropout) is re-seeded from ``base.seed`` (and the rank) at the
start of every epoch, and every epoch ends in an atomic checkpoint (rank 0 writes it, every rank
reads it), so a resumed run continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from facefoundry.config import Config
from facefoundry.data.check import refuse_real_photos, verify_for_training
from facefoundry.data.hashing import dvc_dir_hash
from facefoundry.data.manifest import check_identity_counts
from facefoundry.data.sources import FaceSource, open_source
from facefoundry.data.transforms import FaceAugment, Preprocess, random_hflip
from facefoundry.device import amp_dtype, seed_everything
from facefoundry.errors import FaceFoundryError, note_saved
from facefoundry.io import atomic_write_bytes
from facefoundry.models.bundle import FRModel, export_onnx
from facefoundry.models.heads import MarginHead
from facefoundry.models.iresnet import IResNet, build_backbone
from facefoundry.models.partial_fc import PartialFC, full_state, make_head, own_state, sharded_names
from facefoundry.progress import track
from facefoundry.train.checkpoint import fingerprint, read_checkpoint
from facefoundry.train.distill import distill_loss, regime, teacher_targets
from facefoundry.train.distributed import all_sum, barrier, setup, spread, wrap
from facefoundry.train.feed import Feeder, image_size_of
from facefoundry.train.mixup import combine, source_targets
from facefoundry.train.schedule import lr_at
from facefoundry.train.speed import compile_backbone, uncompile

CHECKPOINT = "checkpoint.pt"


def _quiet(_msg: str) -> None:
    pass


class BatchMixer(Protocol):
    """Turns a batch into soft targets, e.g. identity mixup: ``(x, labels) -> (x, [B,K], [B,K])``."""

    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


class _Net(nn.Module):
    """Backbone + head as one module so DDP synchronises both (a Partial FC head's per-rank centres excepted: DDP
    leaves them alone). ``head`` is None when the student learns from a
    teacher alone (``train.objective: distill``); ``distill`` is (loss kind, weight) when a teacher is used."""

    def __init__(
        self, backbone: nn.Module, head: MarginHead | PartialFC | None, distill: tuple[str, float] | None = None
    ):
        super().__init__()
        self.backbone, self.head, self.distill = backbone, head, distill

    def forward(
        self,
        x: torch.Tensor,
        labels: torch.Tensor,
        weights: torch.Tensor | None,
        amp: torch.dtype | None,
        teacher: torch.Tensor | None = None,
    ):
        with torch.autocast(x.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            emb, norm = self.backbone(x)
        loss = self.head(emb.float(), norm.float(), labels, weights) if self.head is not None else emb.new_zeros(())
        if self.distill is not None and teacher is not None:
            kind, weight = self.distill
            loss = loss + weight * distill_loss(emb, teacher, kind)
        return loss, emb.detach()


@dataclass
class EpochStats:
    epoch: int
    loss: float
    accuracy: float
    lr: float
    images_per_second: float
    seconds: float
    teacher_cosine: float | None = None  # distill | both: mean cosine of the student's and teacher's vectors


@dataclass
class TrainResult:
    model_dir: Path
    history: list[EpochStats] = field(default_factory=list)
    resumed_from: int = 0


class Trainer:
    def __init__(
        self,
        cfg: Config,
        source: FaceSource | None = None,
        mixer: BatchMixer | None = None,
        log: Callable[[str], None] = print,
    ):
        self.rank, self.world, self.device = setup(cfg.base.device)  # GPU LOCAL_RANK; the process group if several
        log = log if self.rank == 0 else _quiet  # rank 0 speaks for all
        self.cfg, self.t, self.log, self.mixer = cfg, cfg.train, log, mixer
        if self.t.threads:
            torch.set_num_threads(self.t.threads)
        self.source = source or open_source(self.t.dataset)
        refuse_real_photos(self.source, "train.dataset")
        check_identity_counts(
            self.source.labels, self.source.identities, self.t.min_images_per_identity, str(self.source.root)
        )
        self.size = cfg.base.image_size
        actual = image_size_of(self.source)
        if actual != self.size:
            raise FaceFoundryError(
                f"{self.source.root}: images are {actual}x{actual} but base.image_size is {self.size}"
            )
        if len(self.source) < self.t.batch_size * self.world:
            procs = f" × {self.world} processes" if self.world > 1 else ""
            raise FaceFoundryError(
                f"{self.source.root}: {len(self.source)} images are fewer than one batch "
                f"(train.batch_size={self.t.batch_size}{procs})"
            )
        self.preprocess = Preprocess(image_size=self.size)
        self.augment = FaceAugment(self.t.augment)
        b = self.t.backbone
        self.teacher_vectors, self.teacher_info = teacher_targets(self.t, self.source, self.device, mixer, log)
        dim = self.teacher_info.get("dim", b.embedding_size)  # a distilled student speaks the teacher's space
        self.init_info: dict = {}
        start = self._load_init() if self.t.init else None
        if start is not None and self.teacher_info and start.backbone.config["embedding_size"] != dim:
            raise FaceFoundryError(
                f"train.init {self.t.init}: {start.backbone.config['embedding_size']}-d embeddings, but the "
                f"teacher {self.t.teacher} gives {dim}-d vectors to distil"
            )
        seed_everything(cfg.base.seed)
        if start is None:
            self.backbone = build_backbone(b.name, self.size, dim, b.width, b.layers, b.se, b.dropout)
        else:  # the starting model's architecture and weights (train.backbone's dropout); the head is new
            self.backbone = IResNet(**{**start.backbone.config, "dropout": b.dropout})
            self.backbone.load_state_dict(start.backbone.state_dict())
        self.domain = self._domain_mixup()
        classes = self.source.num_classes + (self.domain.num_classes if self.domain is not None else 0)
        if self.source.mix_labels is not None:
            log(
                f"{self.source.root}: soft labels (identity mixup) on {int((self.source.mix_labels >= 0).sum())} "
                f"of {len(self.source)} images"
            )
        self.num_classes = classes
        emb_dim = self.backbone.config["embedding_size"]
        self.head = (  # the margin head, or its Partial FC: this rank's block of the class centres, sampled per step
            make_head(self.t.head, self.t.partial_fc, classes, emb_dim, self.rank, self.world)
            if self.t.objective != "distill"
            else None  # the teacher alone: no labels, no head
        )
        self.memory_format = torch.channels_last if self.t.channels_last else torch.contiguous_format
        distill = (self.t.distill.loss, self.t.distill.weight) if self.teacher_info else None
        # Module.to takes memory_format at run time; torch's stub does not list it
        self.net = _Net(self.backbone, self.head, distill).to(self.device, memory_format=self.memory_format)  # type: ignore[call-overload]
        compile_backbone(self.backbone, self.t.compile, self.device)  # in place: the state dict keeps its keys
        self.ddp = wrap(self.net, self.device, self.world, sharded_names(self.net))  # DDP when several processes train
        self.amp = amp_dtype(self.device) if self.t.amp else None  # fp16 on CUDA, bf16 on a bf16 CPU, else off
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.opt = torch.optim.SGD(
            self.net.parameters(), lr=self.t.lr, momentum=self.t.momentum, weight_decay=self.t.weight_decay
        )
        self.out = Path(self.t.out)
        self.dataset_digest = dvc_dir_hash(self.source.root)
        # every image's hash and colour mode, before any is decoded (once per dataset version, cached)
        self.data_checks = (
            verify_for_training(self.source, self.dataset_digest, self.t.non_rgb, log) if self.t.verify_data else {}
        )
        self.feeder = Feeder(
            self.source,
            self.size,
            self.t.batch_size,
            self.t.preload_max_mb,
            self.t.num_workers,
            self.rank,
            self.world,
            progress=log,
        )
        self.domain_digest = dvc_dir_hash(self.domain.source.root) if self.domain is not None else None
        digests = (self.dataset_digest, self.init_info.get("md5"), self.domain_digest, self.teacher_info.get("digest"))
        self.fingerprint = fingerprint(cfg, *digests, world=self.world)  # N processes: another global batch

    @property
    def regime(self) -> str:
        """``labels``, or ``distill:<teacher>`` / ``both:<teacher>``: what the student learned from."""
        return regime(self.t.objective, self.t.teacher)

    def _domain_mixup(self):  # DomainMixup | None
        """``train.domain_mixup``: the second domain, or None (off, or ψ = 1 everywhere: training on S alone)."""
        dm = self.t.domain_mixup
        if dm.dataset is None:
            return None
        from facefoundry.sampling.mixup import is_identity
        from facefoundry.train.mixup import DomainMixup

        if is_identity(dm.psi):
            self.log(
                f"train.domain_mixup: ψ = 1 for every batch, which is training on {self.source.root} alone; "
                f"{dm.dataset} is not used"
            )
            return None
        domain = DomainMixup(
            dm,
            self.size,
            self.t.batch_size,
            self.t.preload_max_mb,
            self.t.num_workers,
            self.source.num_classes,
            self.cfg.base.seed,
            self.t.min_images_per_identity,
            self.log,
            self.rank,
            self.world,
        )
        refuse_real_photos(domain.source, "train.domain_mixup.dataset")
        return domain

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        x = self.augment(random_hflip(self.preprocess(images), self.t.flip_prob))
        return x.to(self.device, memory_format=self.memory_format, non_blocking=True)

    def _load_init(self) -> FRModel:
        """``train.init``: backbone weights and preprocessing to start from (a folder, ``.pth`` or ``.onnx``)."""
        from facefoundry.models.released import file_digest, load_backbone

        assert self.t.init is not None  # called only when train.init is set
        start = load_backbone(self.t.init, self.t.init_arch)
        side = start.preprocess.image_size
        if side != self.size:
            raise FaceFoundryError(
                f"train.init {self.t.init}: the model takes {side}-px input but base.image_size is "
                f"{self.size}; train on {side}-px crops (base.image_size={side}) or start from a "
                f"{self.size}-px model"
            )
        self.preprocess = start.preprocess  # the colour order and normalisation the weights were trained with
        c = start.backbone.config
        arch = start.info.get("arch") or f"iresnet{list(c['layers'])}"
        self.init_info = {
            "path": str(self.t.init),
            "md5": file_digest(self.t.init),
            "arch": arch,
            "format": start.info.get("source_format", "facefoundry"),
        }
        self.log(
            f"starting from {self.t.init} ({arch}, width {c['width']}, {c['embedding_size']}-d); "
            f"a fresh {self.t.head.name} head for {self.source.num_classes} classes"
        )
        return start

    # -- checkpoints -----------------------------------------------------------------
    def _save_checkpoint(self, epoch: int, history: list[EpochStats]) -> None:
        """Rank 0 writes; every rank waits until it is written (a rank that resumes next reads it whole)."""
        net, opt = full_state(self.net, self.opt, self.head)  # Partial FC: every rank's centres gathered
        if self.rank == 0:
            self._write_checkpoint(epoch, history, net, opt)
        barrier()

    def _write_checkpoint(self, epoch: int, history: list[EpochStats], net: dict, opt: dict) -> None:
        state = {
            "epoch": epoch,
            "fingerprint": self.fingerprint,
            "net": net,
            "opt": opt,
            "scaler": self.scaler.state_dict(),
            "history": [s.__dict__ for s in history],
        }
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.out / CHECKPOINT, buf.getvalue())
        note_saved("train", f"epoch {epoch} checkpoint in {self.out / CHECKPOINT}")

    def _load_checkpoint(self) -> tuple[int, list[EpochStats]]:
        path = self.out / CHECKPOINT
        state = read_checkpoint(path, self.device, self.log)
        if state is not None and state.get("fingerprint") != self.fingerprint:
            self.log(f"{path}: made with other settings or data; starting afresh")
            state = None
        low, high = spread(int(state["epoch"]) if state is not None else 0, self.device)  # every rank reads it
        if low != high:
            raise FaceFoundryError(
                f"{path}: the {self.world} processes found checkpoints of epochs {low} to {high}; "
                "train.out must be one folder every node reads (a shared filesystem)"
            )
        if state is None:
            return 0, []
        net, opt = own_state(state["net"], state["opt"], self.net, self.opt, self.head)  # Partial FC: own rows
        self.net.load_state_dict(net)
        self.opt.load_state_dict(opt)
        self.scaler.load_state_dict(state["scaler"])
        self.log(f"resuming from {path} after epoch {state['epoch']}")
        return int(state["epoch"]), [EpochStats(**s) for s in state["history"]]

    # -- loop ------------------------------------------------------------------------
    def fit(
        self,
        on_epoch: Callable[[EpochStats], None] | None = None,
        stop_after: int | None = None,
        on_resume: Callable[[list[EpochStats]], None] | None = None,
    ) -> TrainResult:
        """Train to ``train.epochs`` (or stop after epoch ``stop_after``, for tests and preemption).

        ``on_resume`` receives the checkpoint's epochs when a run resumes: a process killed between
        its checkpoint and ``on_epoch`` has saved an epoch that nobody reported yet.
        """
        start, history = self._load_checkpoint()
        if start and on_resume:
            on_resume(list(history))
        steps = self.feeder.steps_per_epoch()
        total, warm = steps * self.t.epochs, round(self.t.warmup_epochs * steps)
        milestones = [m * steps for m in self.t.milestones]
        last = min(self.t.epochs, stop_after or self.t.epochs)
        for epoch in range(start, last):
            seed_everything(self.cfg.base.seed + 1000 * (epoch + 1) + 1_000_003 * self.rank)  # per-rank flips
            self.net.train()
            t0, seen, loss_sum, correct, agree = time.perf_counter(), 0, 0.0, 0, 0.0
            lr = self.t.lr
            batches = track(
                self.feeder.epoch(self.cfg.base.seed + epoch, indices=True),
                total=steps,
                unit="batch",
                desc=f"train {epoch + 1}/{self.t.epochs}",
                disable=self.rank != 0,
            )
            if self.domain is not None:
                self.domain.start_epoch(epoch)
            for i, (images, batch_labels, idx) in enumerate(batches):
                step = epoch * steps + i
                lr = lr_at(step, total, self.t.lr, warm, self.t.schedule, milestones, self.t.gamma)
                for g in self.opt.param_groups:
                    g["lr"] = lr
                x = self._prepare(images)
                labels = batch_labels.to(self.device)
                targets, weights = source_targets(self.source, labels, idx)  # soft labels of identity mixup
                if self.domain is not None:  # SynFace domain mixup, one ψ per batch
                    r_images, r_targets, r_weights = self.domain.next_batch(self.device)
                    psi = self.domain.psi()
                    x = psi * x + (1 - psi) * self._prepare(r_images)
                    targets, weights = combine(targets, weights, r_targets, r_weights, psi)
                if self.mixer is not None:
                    x, targets, weights = self.mixer(x, labels)
                goal = self.teacher_vectors[idx].to(self.device) if self.teacher_vectors is not None else None
                loss, emb = self.ddp(x, targets, weights, self.amp, goal)
                self.opt.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if self.t.grad_clip > 0:
                    self.scaler.unscale_(self.opt)
                    nn.utils.clip_grad_norm_(self.backbone.parameters(), self.t.grad_clip)
                self.scaler.step(self.opt)
                self.scaler.update()
                with torch.no_grad():
                    if isinstance(self.head, PartialFC):  # predicted in its forward, over every rank's centres
                        correct += int((self.head.predicted == labels).sum())
                    elif self.head is not None:
                        correct += int((self.head.cosines(emb).argmax(1) == labels).sum())
                    if goal is not None:
                        agree += float((nn.functional.normalize(emb.float(), dim=1) * goal).sum())
                seen += len(labels)
                loss_sum += float(loss.detach()) * len(labels)
                batches.set_postfix(loss=f"{loss_sum / seen:.3f}", lr=f"{lr:.4f}")
                if self.rank == 0 and (i + 1) % self.t.log_every == 0:
                    rate = self.world * seen / (time.perf_counter() - t0)  # every rank takes as many images
                    self.log(
                        f"epoch {epoch + 1}/{self.t.epochs} step {i + 1}/{steps} loss {loss_sum / seen:.3f} "
                        f"lr {lr:.4f} {rate:.0f} img/s"
                    )
            secs = time.perf_counter() - t0
            n, losses, right, agrees = all_sum([seen, loss_sum, correct, agree], self.device)  # over every rank
            stats = EpochStats(
                epoch + 1,
                losses / max(1, n),
                right / max(1, n) if self.head is not None else float("nan"),  # no labels: no accuracy
                lr,
                n / max(secs, 1e-9),
                secs,
                agrees / max(1, n) if self.teacher_vectors is not None else None,
            )
            history.append(stats)
            self._save_checkpoint(epoch + 1, history)
            if self.rank == 0:
                agreed = f" teacher-cos {stats.teacher_cosine:.3f}" if stats.teacher_cosine is not None else ""
                acc = f" train-acc {stats.accuracy:.3f}" if self.head is not None else ""
                self.log(
                    f"epoch {stats.epoch}/{self.t.epochs}: loss {stats.loss:.3f}{acc}{agreed} "
                    f"{stats.images_per_second:.0f} img/s ({secs:.1f}s)"
                )
            if on_epoch:
                on_epoch(stats)
        return TrainResult(model_dir=self.out / "model", history=history, resumed_from=start)

    def _mixup_info(self) -> dict:
        out: dict = {}
        if self.source.mix_labels is not None:
            out["soft_labels"] = int((self.source.mix_labels >= 0).sum())
        if self.domain is not None:
            out["domain_mixup"] = {
                "dataset": str(self.domain.source.root),
                "dataset_dvc_md5": self.domain_digest,
                "label_offset": self.source.num_classes,
                "classes": self.domain.num_classes,
                "psi": self.domain.grid.tolist(),
            }
        return out

    def export(self, info: dict) -> FRModel:
        """Write the model folder (+ ONNX) from the current weights."""
        self.net.eval()
        uncompile(self.backbone)  # the eager module is what is saved, exported and evaluated
        # saved weights in the standard layout (Module.to takes memory_format; torch's stub does not list it)
        self.backbone.to("cpu", memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        model = FRModel(
            self.backbone,
            self.preprocess,
            {
                "num_classes": self.num_classes,
                "dataset": str(self.source.root),
                "regime": self.regime,
                **(
                    {"distill": {k: v for k, v in self.teacher_info.items() if k != "digest"}}
                    if self.teacher_info
                    else {}
                ),
                **({"teacher_vectors_digest": self.teacher_info["digest"]} if self.teacher_info else {}),
                **self._mixup_info(),
                "dataset_dvc_md5": self.dataset_digest,
                "fingerprint": self.fingerprint,
                **({"init": self.init_info} if self.init_info else {}),
                **info,
            },
            self.head.cpu() if isinstance(self.head, MarginHead) else None,  # Partial FC: the backbone only
        )
        model.save(self.out / "model")
        if self.t.export_onnx:
            export_onnx(self.backbone, self.out / "model" / "backbone.onnx", self.size)
        self.net.to(self.device, memory_format=self.memory_format)
        return model
