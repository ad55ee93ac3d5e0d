"""Training IDSync on aligned photos (``facefoundry train-idsync``).

1. **Identity vectors** — every photo's unit vector from the frozen encoder, cached by the dataset's
   DVC hash (shared with every generator: :mod:`facefoundry.generators.feed`).
2. **VAE** — no pretrained VAE can be had offline, so a small ``AutoencoderKL`` is trained first
   (L1 + MSE + a small KL term) and saved in ``<cache or out>/vae/``; it is reused while the data and
   its settings are unchanged (``cache`` lets runs that differ in λ or the loss share it and the
   vectors), and its ``scaling_factor`` is set to 1/std of the latents, as Stable Diffusion's was. With
   ``init`` (a local Arc2Face-layout folder) the folder's VAE is used instead.
   The VAE is frozen afterwards; every photo (and its mirror image) is encoded once (:mod:`.vae_training`).
3. **Diffusion** — DDPM noise (scaled-linear β 8.5e-4 → 1.2e-2, 1,000 steps), ε-prediction MSE,
   and λ·identity loss on x̂₀ decoded through the VAE with gradients (:mod:`.losses`). The UNet and the
   whole CLIP text encoder train; the token-embedding table and the VAE stay frozen. With probability
   ``condition_dropout`` a row is conditioned on the empty prompt instead (classifier-free guidance).
4. **Resumable** — every epoch ends in an atomic checkpoint and re-seeds all randomness, so a killed
   run resumes to the weights of an uninterrupted one; ``out/model/`` is the model folder (:mod:`.model`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facefoundry.config import Config, IDSyncCfg, result_settings
from facefoundry.data.hashing import dvc_dir_hash
from facefoundry.data.sources import FaceSource, open_source
from facefoundry.device import resolve_device, seed_everything
from facefoundry.errors import FaceFoundryError, note_saved
from facefoundry.generators.feed import cache_key, identity_vectors
from facefoundry.generators.idsync.conditioning import toy_tokenizer
from facefoundry.generators.idsync.losses import (
    ClassifierIdentityLoss,
    CosineIdentityLoss,
    denoising_target,
    pred_original_sample,
)
from facefoundry.generators.idsync.model import (
    IDSync,
    build_scheduler,
    build_text_encoder,
    build_unet,
    conditioning_space,
    load_components,
    save_model_folder,
)
from facefoundry.generators.idsync.vae_training import _save_state, encode_latents, train_vae
from facefoundry.progress import track
from facefoundry.train.checkpoint import read_checkpoint
from facefoundry.train.feed import Feeder

CHECKPOINT = "checkpoint.pt"
# What changes what IDSync learns is result_settings(cfg.idsync) (the schema's marks say), less `epochs`: the lr is
# constant after warm-up, so raising it continues a finished run.
RESUMABLE = ("epochs",)


# -- one step ------------------------------------------------------------------------------------


@dataclass
class StepDraws:
    """Everything random in one step, drawn from one generator (so a step is reproducible)."""

    noise: torch.Tensor
    timesteps: torch.Tensor
    dropped: torch.Tensor  # bool [B]: conditioned on the empty prompt


def draw(gen: torch.Generator, shape: tuple[int, ...], timesteps: int, dropout: float) -> StepDraws:
    return StepDraws(
        torch.randn(shape, generator=gen),
        torch.randint(0, timesteps, (shape[0],), generator=gen),
        torch.rand(shape[0], generator=gen) < dropout,
    )


def idsync_loss(
    model: IDSync,
    latents: torch.Tensor,
    vectors: torch.Tensor,
    labels: torch.Tensor,
    d: StepDraws,
    weight: float = 0.0,
    identity_loss: torch.nn.Module | None = None,
    identity_batch: int | None = None,
    max_timestep: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """L = L_denoise + λ·L_id for one batch of (scaled) latents; returns (loss, parts).

    With ``weight == 0`` the identity branch is never computed: the loss is the plain denoising loss.
    The identity loss covers conditioned rows (not the dropped ones) below ``max_timestep``, at most
    ``identity_batch`` of them.
    """
    dev = latents.device
    noise, t = d.noise.to(dev), d.timesteps.to(dev)
    sched = model.scheduler
    noisy = sched.add_noise(latents, noise, t)
    hidden = model.condition(vectors)
    if d.dropped.any():
        empty = model.unconditional().expand_as(hidden)
        hidden = torch.where(d.dropped.to(dev).view(-1, 1, 1), empty, hidden)
    pred = model.unet(noisy, t, hidden).sample
    denoise = F.mse_loss(pred.float(), denoising_target(sched, latents, noise, t).float())
    parts = {"denoise": float(denoise.detach())}
    if weight == 0 or identity_loss is None:
        return denoise, {**parts, "loss": parts["denoise"]}
    keep = ~d.dropped.to(dev)
    if max_timestep is not None:
        keep &= t < max_timestep
    rows = keep.nonzero().flatten()[:identity_batch]
    if len(rows) == 0:
        return denoise, {**parts, "loss": parts["denoise"]}
    x0 = pred_original_sample(sched, pred[rows], t[rows], noisy[rows])
    images = (model.decode(x0) + 1) / 2  # [0, 1], gradients flow through the frozen decoder
    ident = identity_loss(images, labels.to(dev)[rows], vectors[rows])
    total = denoise + weight * ident
    return total, {**parts, "identity": float(ident.detach()), "loss": float(total.detach())}


# -- training --------------------------------------------------------------------------------------


@dataclass
class IDSyncResult:
    model_dir: Path
    history: list[dict] = field(default_factory=list)
    resumed_from: int = 0


def fingerprint(cfg: Config, digest: str, encoder_spec: dict) -> str:
    c = cfg.idsync
    keep = {k: v for k, v in result_settings(c).items() if k not in RESUMABLE}
    if c.identity_weight and c.identity_loss == "ce" and Path(c.classifier).is_dir():  # inputs: their content
        keep["classifier"] = dvc_dir_hash(c.classifier)
    if c.init:
        keep["init"] = dvc_dir_hash(c.init)
    return cache_key({"idsync": keep, "seed": cfg.base.seed, "data": digest, "encoder": encoder_spec})


def _identity_loss(c: IDSyncCfg, encoder, source: FaceSource, device: torch.device):
    if c.identity_weight == 0:
        return None
    if c.identity_loss == "cosine":
        return CosineIdentityLoss(encoder)
    if not Path(c.classifier).is_dir():
        raise FaceFoundryError(
            f"idsync.classifier={c.classifier!r}: no such FR model folder; the CE identity loss "
            "needs a classifier trained on idsync.dataset (`facefoundry train`), or use "
            "idsync.identity_loss=cosine"
        )
    if len(np.unique(source.labels)) == len(source):
        raise FaceFoundryError(
            f"{source.root}: every photo is its own identity (no identity labels); the CE "
            "identity loss needs labels: set idsync.identity_loss=cosine"
        )
    return ClassifierIdentityLoss(c.classifier, source.num_classes, device).to(device)


def build_model(c: IDSyncCfg, vae, id_dim: int, device: torch.device) -> IDSync:
    if c.init:
        base = load_components(c.init, device)
        model = IDSync(
            vae if vae is not None else base.vae, base.unet, base.text_encoder, base.tokenizer, base.scheduler
        )
    else:
        tok = toy_tokenizer()
        latent = c.image_size // 2 ** (len(c.vae_channels) - 1)
        model = IDSync(
            vae,
            build_unet(c, latent, c.latent_channels, c.text_width),
            build_text_encoder(c, tok),
            tok,
            build_scheduler(c),
        )
    width = model.text_encoder.config.hidden_size
    if id_dim > width:
        raise FaceFoundryError(
            f"identity vectors are {id_dim}-d but the text encoder is {width} wide "
            "(idsync.text_width must be at least the encoder's dimension)"
        )
    return model.to(device)


def train_idsync(
    cfg: Config,
    dataset: FaceSource | str | Path | None = None,
    encoder=None,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
    stop_after: int | None = None,
    progress: bool = True,
    digest: str | None = None,
) -> IDSyncResult:
    """Train (or resume) to ``idsync.epochs`` — or stop after epoch ``stop_after`` (tests, preemption).

    ``digest``: the dataset's DVC hash when the caller already has it (the stage does), else computed here.
    """
    c = cfg.idsync
    device = resolve_device(cfg.base.device)
    if c.threads:
        torch.set_num_threads(c.threads)
    source = dataset if isinstance(dataset, FaceSource) else open_source(dataset or c.dataset)
    if len(source) < c.batch_size:
        raise FaceFoundryError(
            f"{source.root}: {len(source)} images are fewer than one batch (idsync.batch_size={c.batch_size})"
        )
    if encoder is None:
        from facefoundry.identity import load_encoder

        encoder = load_encoder(c.encoder)
    encoder = encoder.to(device).eval()
    id_loss = _identity_loss(c, encoder, source, device)  # a bad classifier or unlabelled CE data: fail before work
    out = Path(out or c.out)
    out.mkdir(parents=True, exist_ok=True)
    digest = digest or dvc_dir_hash(source.root)
    feed = Feeder(source, c.image_size, c.batch_size, c.preload_max_mb, resize=True)
    raw = identity_vectors(feed, encoder, Path(c.cache or out) / "id_vectors", digest, c.id_batch_size, log, progress)
    mean = raw.numpy().mean(0) if c.centre_vectors else None
    vectors = torch.from_numpy(conditioning_space(raw.numpy(), mean))  # what the model is conditioned on
    if isinstance(id_loss, CosineIdentityLoss) and mean is not None:
        id_loss.mean = torch.from_numpy(mean).to(device)
    labels = torch.as_tensor(np.asarray(source.labels), dtype=torch.long)

    vae = (
        None
        if c.init and (Path(c.init) / "vae").is_dir()
        else train_vae(c, feed, out, digest, cfg.base.seed, device, log, progress)
    )  # the folder's VAE, else our own
    seed_everything(cfg.base.seed)
    model = build_model(c, vae, encoder.dim, device)
    model.vae.eval().requires_grad_(False)
    model.text_encoder.get_input_embeddings().requires_grad_(False)
    means, stds = encode_latents(model.vae, feed, device, progress=progress)

    params = [p for m in (model.unet, model.text_encoder) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
    fp = fingerprint(cfg, digest, encoder.spec())
    start, history = 0, []
    state = read_checkpoint(out / CHECKPOINT, device, log)
    if state is not None:
        if state.get("fingerprint") != fp:
            log(f"{out / CHECKPOINT}: made with other settings, data or encoder; starting afresh")
        else:
            model.unet.load_state_dict(state["unet"])
            model.text_encoder.load_state_dict(state["text_encoder"])
            opt.load_state_dict(state["opt"])
            start, history = int(state["epoch"]), list(state["history"])
            log(f"idsync: resuming from {out / CHECKPOINT} after epoch {start}")

    steps = len(source) // c.batch_size
    updates_per_epoch = max(1, steps // c.grad_accumulation)
    last = min(c.epochs, stop_after or c.epochs)
    for epoch in range(start, last):
        seed_everything(cfg.base.seed + 1000 * (epoch + 1))
        gen = torch.Generator().manual_seed(cfg.base.seed + 7919 * (epoch + 1))
        order = torch.randperm(len(source), generator=gen)
        model.unet.train()
        model.text_encoder.train()
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        t0 = time.perf_counter()
        bar = track(range(steps), desc=f"idsync {epoch + 1}/{c.epochs}", unit="step", disable=not progress)
        opt.zero_grad(set_to_none=True)
        for i in bar:
            idx = order[i * c.batch_size : (i + 1) * c.batch_size]
            flip = (torch.rand(len(idx), generator=gen) < c.flip_prob).long()
            eps = torch.randn((len(idx), *means.shape[2:]), generator=gen)
            z = (means[flip, idx] + stds[flip, idx] * eps) * model.scaling
            d = draw(gen, tuple(z.shape), model.scheduler.config.num_train_timesteps, c.condition_dropout)
            update = epoch * updates_per_epoch + i // c.grad_accumulation
            for g in opt.param_groups:
                g["lr"] = c.lr * min(1.0, (update + 1) / max(1, c.warmup_steps))
            loss, parts = idsync_loss(
                model,
                z.to(device),
                vectors[idx].to(device),
                labels[idx],
                d,
                c.identity_weight,
                id_loss,
                c.identity_batch,
                c.identity_max_timestep,
            )
            (loss / c.grad_accumulation).backward()
            if (i + 1) % c.grad_accumulation == 0:
                if c.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, c.grad_clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
            for k, v in parts.items():
                sums[k] += v * len(idx)
                counts[k] += len(idx)
            bar.set_postfix(loss=f"{parts['loss']:.4f}")
            if (i + 1) % c.log_every == 0:
                log(
                    f"idsync epoch {epoch + 1}/{c.epochs} step {i + 1}/{steps} "
                    + " ".join(f"{k} {s / counts[k]:.4f}" for k, s in sums.items())
                )
        secs = time.perf_counter() - t0
        stats = {
            "epoch": epoch + 1,
            **{k: s / counts[k] for k, s in sums.items()},
            "lr": opt.param_groups[0]["lr"],
            "images_per_second": steps * c.batch_size / max(secs, 1e-9),
            "seconds": secs,
        }
        history.append(stats)
        _save_state(
            out / CHECKPOINT,
            {
                "epoch": epoch + 1,
                "fingerprint": fp,
                "history": history,
                "unet": model.unet.state_dict(),
                "text_encoder": model.text_encoder.state_dict(),
                "opt": opt.state_dict(),
            },
        )
        note_saved("idsync", f"epoch {epoch + 1} checkpoint in {out / CHECKPOINT}")
        log(
            f"idsync epoch {epoch + 1}/{c.epochs}: loss {stats['loss']:.4f} denoise {stats['denoise']:.4f}"
            + (f" identity {stats['identity']:.4f}" if "identity" in stats else "")
            + f" ({stats['images_per_second']:.0f} img/s, {secs:.0f}s)"
        )

    model.info = {
        "image_size": c.image_size,
        "encoder": encoder.spec(),
        "encoder_name": c.encoder,
        "id_dim": encoder.dim,
        "dataset": str(source.root),
        "dataset_dvc_md5": digest,
        "fingerprint": fp,
        "epochs_trained": len(history),
        "epochs": c.epochs,
        "identity_weight": c.identity_weight,
        "identity_loss": c.identity_loss if c.identity_weight else None,
        "classifier": c.classifier if c.identity_weight and c.identity_loss == "ce" else None,
        "condition_dropout": c.condition_dropout,
        "centre_vectors": c.centre_vectors,
        "init": c.init,
    }
    save_model_folder(model, out / "model", raw.numpy(), np.asarray(source.labels, np.int64), mean)
    return IDSyncResult(model_dir=out / "model", history=history, resumed_from=start)
