"""Training Vec2Face on aligned photos: each image is its own target, its identity vector the input.

``train_vec2face`` (one process; CUDA + fp16 AMP when present, fp32 on CPU):

1. embeds every image once with the frozen identity encoder (batched, with progress) and caches the vectors
   in ``out/id_vectors/<key>.npy``, keyed by the dataset's DVC hash, the encoder spec and the size;
2. trains generator and patch discriminator with AdamW (β 0.9/0.99), lr ``base_lr·batch/112``
   with linear warm-up then cosine (per step), gradient clipping, horizontal flips and random
   erasing of the targets; the discriminator and the GAN term start at ``disc_start_epoch``;
3. ends every epoch in an atomic checkpoint (``out/checkpoint.pt``) and re-seeds all randomness per
   epoch, so a killed run resumes to exactly the weights of an uninterrupted one;
4. writes ``out/model/``: ``vec2face_model.json`` (with the encoder spec) + ``generator/`` +
   ``discriminator/`` + the training photos' identity vectors and labels (``id_vectors.npy``,
   ``id_labels.npy``), from which generation samples new identities.
"""

from __future__ import annotations

import io
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from facefoundry.config import Config, Vec2FaceCfg
from facefoundry.data.hashing import dvc_dir_hash
from facefoundry.data.sources import FaceSource, open_source
from facefoundry.data.transforms import random_hflip_mask
from facefoundry.device import resolve_device, seed_everything
from facefoundry.errors import FaceFoundryError, note_saved
from facefoundry.generators.feed import identity_vectors, to_signed
from facefoundry.generators.vec2face.artifacts import GEOMETRY_PCA, ID_LABELS, ID_VECTORS, NUISANCE_BANK, fingerprint
from facefoundry.generators.vec2face.discriminator import PatchDiscriminator
from facefoundry.generators.vec2face.losses import LossWeights, Vec2FaceLoss
from facefoundry.generators.vec2face.model import Vec2Face, save_model_folder
from facefoundry.generators.vec2face.nuisance import NuisanceEncoder, code_statistics, nuisance_codes, swap_codes
from facefoundry.generators.vec2face.training_data import geometry_landmarks, random_erasing
from facefoundry.identity.base import IdentityEncoder
from facefoundry.io import atomic_dir, atomic_write_bytes
from facefoundry.progress import track
from facefoundry.train.checkpoint import read_checkpoint
from facefoundry.train.feed import Feeder
from facefoundry.train.schedule import lr_at

if TYPE_CHECKING:
    from facefoundry.models.base import ConfigModule

CHECKPOINT = "checkpoint.pt"
# Settings that do not change what is learned; a checkpoint made under other values resumes.


# -- building blocks from the config -------------------------------------------------------------


def build_generator(v: Vec2FaceCfg, id_dim: int) -> Vec2Face:
    return Vec2Face(
        id_dim=id_dim,
        image_size=v.image_size,
        patch=v.patch,
        width=v.width,
        depth=v.depth,
        heads=v.heads,
        decoder_depth=v.decoder_depth,
        decoder_heads=v.decoder_heads,
        mlp_ratio=v.mlp_ratio,
        dropout=v.dropout,
        decoder_channels=v.decoder_channels,
        decoder_multipliers=list(v.decoder_multipliers),
        z_channels=v.z_channels,
        decoder_res_blocks=v.decoder_res_blocks,
        attr_dim=v.geometry_codes or v.nuisance_codes,
        train_mask=[v.train_mask_min, v.train_mask_mean, v.train_mask_std],
        generate_mask=[v.gen_mask_min, v.gen_mask_mean, v.gen_mask_std],
        standardise_inputs=v.standardise_inputs,
    )


def build_discriminator(v: Vec2FaceCfg) -> PatchDiscriminator:
    return PatchDiscriminator(dims=list(v.disc_dims))


def build_nuisance(v: Vec2FaceCfg) -> NuisanceEncoder | None:
    """The learned nuisance encoder when ``vec2face.nuisance_codes`` > 0 (training only)."""
    return NuisanceEncoder(dim=v.nuisance_codes, channels=v.nuisance_channels) if v.nuisance_codes else None


def loss_weights(v: Vec2FaceCfg) -> LossWeights:
    return LossWeights(
        v.mse_weight,
        v.perceptual_weight,
        v.ssim_weight,
        v.token_weight,
        v.identity_weight,
        v.gan_weight,
        v.adaptive_gan_weight,
    )


def swapped_rows(v: Vec2FaceCfg, batch: int) -> int:
    """Rows of a batch generated with another photo's nuisance code (``vec2face.nuisance_swap_fraction``; the
    config refuses a fraction without ``nuisance_codes``)."""
    return int(v.nuisance_swap_fraction * batch)


def learning_rate(v: Vec2FaceCfg) -> float:
    """The paper's scaling: ``base_lr · batch_size / 112``."""
    return v.base_lr * v.batch_size / 112


# -- one step ------------------------------------------------------------------------------------


def train_step(
    model: Vec2Face,
    disc: nn.Module,
    loss_fn: Vec2FaceLoss,
    images: torch.Tensor,
    id_vectors: torch.Tensor,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer | None,
    scaler: torch.amp.GradScaler,
    use_disc: bool = False,
    amp: bool = False,
    grad_clip: float = 0.0,
    attributes: torch.Tensor | None = None,
    nuisance: NuisanceEncoder | None = None,
    nuisance_images: torch.Tensor | None = None,
    kl_weight: float = 0.0,
    free_bits: float = 0.0,
    swapped: int = 0,
) -> dict[str, float]:
    """One generator (+ discriminator, when ``use_disc``) update; returns every loss term as a float.

    With a ``nuisance`` encoder, its sampled code of ``nuisance_images`` (the targets before random
    erasing; default ``images``) is the attribute input, and ``kl_weight``·KL (with ``free_bits`` nats per
    axis) joins the total (terms ``kl``, the plain KL, and ``kl_objective``). ``swapped`` > 0: the last
    that many rows get the codes of the first ones and no reconstruction target (identity loss only), so
    the identity has to come from the vector. ``opt_g`` must then hold the encoder's parameters too."""
    dev = images.device.type
    disc.requires_grad_(False)
    with torch.autocast(dev, dtype=torch.float16, enabled=amp):
        kl = None
        if nuisance is not None:
            attributes, kl, kl_objective = nuisance_codes(
                nuisance, images if nuisance_images is None else nuisance_images, free_bits=free_bits
            )
            attributes = swap_codes(attributes, swapped)
        elif swapped:
            raise FaceFoundryError("train_step: swapped rows need a nuisance encoder")
        out = model(id_vectors, images, attributes=attributes)
        terms = loss_fn(
            out.images,
            images,
            id_vectors,
            out.logits,
            out.tokens,
            disc if use_disc else None,
            model.last_layer if use_disc else None,
            reconstruct=len(images) - swapped,
        )
        if kl is not None:
            terms["kl"], terms["kl_objective"] = kl, kl_objective
            terms["total"] = terms["total"] + kl_weight * kl_objective
    opt_g.zero_grad(set_to_none=True)
    scaler.scale(terms["total"]).backward()
    if grad_clip > 0:
        scaler.unscale_(opt_g)
        terms["grad_norm"] = nn.utils.clip_grad_norm_([p for g in opt_g.param_groups for p in g["params"]], grad_clip)
    scaler.step(opt_g)
    if use_disc and opt_d is not None:
        disc.requires_grad_(True)
        with torch.autocast(dev, dtype=torch.float16, enabled=amp):
            d_loss = loss_fn.discriminator_loss(disc, images, out.images)
        opt_d.zero_grad(set_to_none=True)
        scaler.scale(d_loss).backward()
        if grad_clip > 0:
            scaler.unscale_(opt_d)
            nn.utils.clip_grad_norm_(disc.parameters(), grad_clip)
        scaler.step(opt_d)
        terms["disc"] = d_loss
    scaler.update()
    return {k: float(v.detach()) for k, v in terms.items()}


# -- the loop ------------------------------------------------------------------------------------


def _ramp(step: int, span: float) -> float:
    """0 → 1 linearly over ``span`` steps (1 at once when ``span`` is 0)."""
    return 1.0 if span <= 0 else min(1.0, step / span)


@dataclass
class Vec2FaceResult:
    model_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: mean loss terms, lr, img/s
    resumed_from: int = 0


def _load_checkpoint(
    path: Path,
    fp: str,
    nets: dict[str, nn.Module | torch.optim.Optimizer | torch.amp.GradScaler],
    device: torch.device,
    log: Callable[[str], None],
) -> tuple[int, list[dict]]:
    state = read_checkpoint(path, device, log)
    if state is None:
        return 0, []
    if state.get("fingerprint") != fp:
        log(f"{path}: made with other settings, data or encoder; starting afresh")
        return 0, []
    for name, obj in nets.items():
        obj.load_state_dict(state[name])
    log(f"resuming from {path} after epoch {state['epoch']}")
    return int(state["epoch"]), list(state["history"])


def train_vec2face(
    cfg: Config,
    dataset: FaceSource | str | Path | None = None,
    encoder: IdentityEncoder | None = None,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
    stop_after: int | None = None,
    progress: bool = True,
    digest: str | None = None,
) -> Vec2FaceResult:
    """Train (or resume) to ``vec2face.epochs`` — or stop after epoch ``stop_after`` (tests, preemption).

    ``digest``: the dataset's DVC hash when the caller already has it (the stage does), else computed here.
    """
    v = cfg.vec2face
    device = resolve_device(cfg.base.device)
    if v.threads:
        torch.set_num_threads(v.threads)
    source = dataset if isinstance(dataset, FaceSource) else open_source(dataset or v.dataset)
    if len(source) < v.batch_size:
        raise FaceFoundryError(
            f"{source.root}: {len(source)} images are fewer than one batch (vec2face.batch_size={v.batch_size})"
        )
    if encoder is None:
        from facefoundry.identity import load_encoder

        encoder = load_encoder(v.encoder)
    if not encoder.differentiable and v.identity_weight > 0:
        raise FaceFoundryError(
            f"vec2face.encoder={v.encoder!r} is not differentiable; the identity loss needs "
            "one (or set vec2face.identity_weight=0)"
        )
    encoder = encoder.to(device).eval()
    out = Path(out or v.out)
    feed = Feeder(source, v.image_size, v.batch_size, v.preload_max_mb, v.num_workers, resize=True)
    digest = digest or dvc_dir_hash(source.root)
    vectors = identity_vectors(feed, encoder, out / "id_vectors", digest, v.id_batch_size, log, progress)

    seed_everything(cfg.base.seed)
    model, disc = build_generator(v, encoder.dim).to(device), build_discriminator(v).to(device)
    if v.standardise_inputs:
        model.set_input_stats(vectors)
    geometry = codes = None
    if v.geometry_codes:  # (codes of each crop, codes of its mirror image): flips keep their geometry
        from facefoundry.identity.attributes import GeometryPCA, mirror

        lm = geometry_landmarks(feed, out / "id_vectors", digest, log=log, progress=progress)
        geometry = GeometryPCA.fit(np.concatenate([lm, mirror(lm)]), v.geometry_codes)
        codes = (torch.from_numpy(geometry.encode(lm)), torch.from_numpy(geometry.encode(mirror(lm))))
    nuisance = build_nuisance(v)
    if nuisance is not None:
        nuisance = nuisance.to(device)
    loss_fn = Vec2FaceLoss(encoder, loss_weights(v), v.perceptual_net)
    lr = learning_rate(v)
    betas = (float(v.betas[0]), float(v.betas[1]))
    params_g = list(model.parameters()) + (list(nuisance.parameters()) if nuisance is not None else [])
    opt_g = torch.optim.AdamW(params_g, lr=lr, betas=betas, weight_decay=v.weight_decay)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=lr, betas=betas, weight_decay=v.weight_decay)
    amp = v.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    fp = fingerprint(cfg, digest, encoder.spec())
    stateful: dict[str, nn.Module | torch.optim.Optimizer | torch.amp.GradScaler] = {
        "generator": model,
        "discriminator": disc,
        "opt_g": opt_g,
        "opt_d": opt_d,
        "scaler": scaler,
    }
    if nuisance is not None:
        stateful["nuisance"] = nuisance
    start, history = _load_checkpoint(out / CHECKPOINT, fp, stateful, device, log)

    steps = feed.steps_per_epoch()
    total, warm = steps * v.epochs, round(v.warmup_epochs * steps)
    last = min(v.epochs, stop_after or v.epochs)
    for epoch in range(start, last):
        seed_everything(cfg.base.seed + 1000 * (epoch + 1))
        aug = torch.Generator().manual_seed(cfg.base.seed + 7919 * (epoch + 1))
        use_disc = epoch >= v.disc_start_epoch
        model.train()
        disc.train()
        if nuisance is not None:
            nuisance.train()
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        t0, seen, lr_now = time.perf_counter(), 0, lr
        bar = track(
            feed.epoch(cfg.base.seed + epoch, indices=True),
            total=steps,
            desc=f"vec2face {epoch + 1}/{v.epochs}",
            unit="step",
            disable=not progress,
        )
        for i, (imgs, _, idx) in enumerate(bar):
            lr_now = lr_at(epoch * steps + i, total, lr, warm, "cosine")
            for opt in (opt_g, opt_d):
                for g in opt.param_groups:
                    g["lr"] = lr_now
            x, flipped = random_hflip_mask(to_signed(imgs), v.flip_prob, aug)
            clean = x  # the nuisance encoder sees the flipped target before erasing
            x = random_erasing(x, v.random_erasing, aug)
            attrs = (
                None if codes is None else torch.where(flipped.unsqueeze(1), codes[1][idx], codes[0][idx]).to(device)
            )
            terms = train_step(
                model,
                disc,
                loss_fn,
                x.to(device, non_blocking=True),
                vectors[idx].to(device),
                opt_g,
                opt_d,
                scaler,
                use_disc,
                amp,
                v.grad_clip,
                attrs,
                nuisance,
                clean.to(device, non_blocking=True) if nuisance is not None else None,
                v.nuisance_kl_weight * _ramp(epoch * steps + i, v.nuisance_kl_warmup_epochs * steps),
                v.nuisance_free_bits,
                swapped_rows(v, len(idx)),
            )
            for k, val in terms.items():
                if math.isfinite(val):  # an fp16 step the scaler skips has an infinite gradient norm
                    sums[k] += val * len(idx)
                    counts[k] += len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{terms['total']:.3f}", id=f"{terms['identity']:.3f}")
            if (i + 1) % v.log_every == 0:
                log(
                    f"vec2face epoch {epoch + 1}/{v.epochs} step {i + 1}/{steps} "
                    + " ".join(f"{k} {s / counts[k]:.4f}" for k, s in sums.items())
                )
        secs = time.perf_counter() - t0
        stats = {
            "epoch": epoch + 1,
            **{k: s / counts[k] for k, s in sums.items()},
            "lr": lr_now,
            "disc_on": float(use_disc),
            "images_per_second": seen / max(secs, 1e-9),
            "seconds": secs,
        }
        history.append(stats)
        state = {
            "epoch": epoch + 1,
            "fingerprint": fp,
            "history": history,
            **{k: obj.state_dict() for k, obj in stateful.items()},
        }
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(out / CHECKPOINT, buf.getvalue())
        note_saved("vec2face", f"epoch {epoch + 1} checkpoint in {out / CHECKPOINT}")
        log(
            f"vec2face epoch {epoch + 1}/{v.epochs}: total {stats.get('total', 0):.4f} mse {stats.get('mse', 0):.4f} "
            f"identity {stats.get('identity', 0):.4f} token {stats.get('token', 0):.4f}"
            + (f" disc {stats['disc']:.4f}" if "disc" in stats else "")
            + (f" kl {stats['kl']:.2f}" if "kl" in stats else "")
            + f" ({stats['images_per_second']:.0f} img/s, {secs:.1f}s)"
        )

    model.eval()
    disc.eval()
    info = {
        "encoder": encoder.spec(),
        "encoder_name": v.encoder,
        "id_dim": encoder.dim,
        "image_size": v.image_size,
        "dataset": str(source.root),
        "dataset_dvc_md5": digest,
        "fingerprint": fp,
        "epochs_trained": len(history),
        "epochs": v.epochs,
        "perceptual": loss_fn.perceptual_source,
        "geometry_codes": v.geometry_codes,
    }
    extras: dict[str, ConfigModule] = {}
    if nuisance is not None:
        nuisance.eval()
        with torch.no_grad():
            means = torch.cat([nuisance(to_signed(imgs).to(device))[0].cpu() for imgs, _ in feed.ordered(v.batch_size)])
        info.update(nuisance_codes=v.nuisance_codes, **code_statistics(means))
        log(
            f"vec2face: nuisance code, {info['nuisance_active_axes']} of {v.nuisance_codes} axes active "
            f"(mean variance {info['nuisance_mean_variance']:.3f}), {info['nuisance_effective_axes']:.1f} "
            "effective axes (participation ratio)"
        )
        extras["nuisance_encoder"] = nuisance
    with atomic_dir(out / "model") as tmp:
        save_model_folder(tmp, model, disc, info, extras)
        # the training identity space: generation fits its PCA here and keeps new identities away from these
        np.save(tmp / ID_VECTORS, vectors.numpy().astype(np.float32))
        np.save(tmp / ID_LABELS, np.asarray(source.labels, dtype=np.int64))
        if geometry is not None:
            geometry.save(tmp / GEOMETRY_PCA)
        if nuisance is not None:  # the training photos' posterior means: generate.vec2face.nuisance_sampling=bank
            np.save(tmp / NUISANCE_BANK, means.numpy().astype(np.float32))
    return Vec2FaceResult(model_dir=out / "model", history=history, resumed_from=start)
