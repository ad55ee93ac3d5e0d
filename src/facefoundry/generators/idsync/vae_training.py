"""Pre-training IDSync's VAE, step 2 of :mod:`.training`: with no pretrained VAE to be had offline, a small
``AutoencoderKL`` is trained on the photos (L1 + MSE + a small KL term, resumable per epoch), cached in
``<cache or out>/vae/`` under a key of the data and its settings (``train_vae``), and, frozen, encodes every
photo and its mirror image once into the posterior the diffusion training samples latents from
(``encode_latents``).
"""

from __future__ import annotations

import io
import math
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from facefoundry.config import IDSyncCfg
from facefoundry.device import seed_everything
from facefoundry.errors import note_saved
from facefoundry.generators.feed import cache_key, to_signed
from facefoundry.generators.idsync.model import build_vae
from facefoundry.io import atomic_dir, atomic_write_bytes, atomic_write_json, file_lock, load_json_file
from facefoundry.progress import track
from facefoundry.train.checkpoint import read_checkpoint
from facefoundry.train.feed import Feeder

VAE_CHECKPOINT, VAE_DIR, VAE_INDEX = "vae_checkpoint.pt", "vae", "facefoundry_vae.json"
_VAE_KEYS = ("image_size", "vae_channels", "latent_channels", "vae_epochs", "vae_lr", "vae_kl_weight", "vae_batch_size")


def _save_state(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


# -- the VAE -------------------------------------------------------------------------------------


def vae_key(c: IDSyncCfg, digest: str, seed: int) -> str:
    return cache_key({"data": digest, "seed": seed, **{k: getattr(c, k) for k in _VAE_KEYS}})


def train_vae(
    c: IDSyncCfg,
    feed: Feeder,
    out: Path,
    digest: str,
    seed: int,
    device: torch.device,
    log: Callable[[str], None] = print,
    progress: bool = True,
):
    """The cached VAE of ``out/vae/`` when its key matches, else train one (resumable per epoch)."""
    from diffusers import AutoencoderKL

    from facefoundry.generators.idsync.model import quiet

    quiet()
    key = vae_key(c, digest, seed)
    folder = Path(c.cache or out) / VAE_DIR
    with file_lock(folder.parent / f".{folder.name}.lock"):  # jobs sharing a cache (sweep trials) train it once
        if (folder / VAE_INDEX).is_file() and load_json_file(folder / VAE_INDEX, "VAE index").get("key") == key:
            log(f"idsync VAE: reusing {folder}")
            return AutoencoderKL.from_pretrained(folder).to(device)
        return _train_vae(c, feed, out, folder, key, digest, seed, device, log, progress)


def _train_vae(
    c: IDSyncCfg,
    feed: Feeder,
    out: Path,
    folder: Path,
    key: str,
    digest: str,
    seed: int,
    device: torch.device,
    log: Callable[[str], None],
    progress: bool,
):
    seed_everything(seed)
    vae = build_vae(c).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=c.vae_lr)
    start = 0
    state = read_checkpoint(out / VAE_CHECKPOINT, device, log)
    if state and state.get("key") == key:
        vae.load_state_dict(state["vae"])
        opt.load_state_dict(state["opt"])
        start = int(state["epoch"])
        log(f"idsync VAE: resuming after epoch {start}")
    steps = max(1, len(feed) // c.vae_batch_size)
    for epoch in range(start, c.vae_epochs):
        seed_everything(seed + 101 * (epoch + 1))
        gen = torch.Generator().manual_seed(seed + 211 * (epoch + 1))
        order = torch.randperm(len(feed), generator=gen)
        sums: defaultdict[str, float] = defaultdict(float)
        t0 = time.perf_counter()
        vae.train()
        for s in track(range(steps), desc=f"idsync VAE {epoch + 1}/{c.vae_epochs}", unit="step", disable=not progress):
            idx = order[s * c.vae_batch_size : (s + 1) * c.vae_batch_size]
            x = to_signed(feed.batch(idx)).to(device)
            post = vae.encode(x).latent_dist
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen).to(device)
            rec = vae.decode(z).sample
            l1, mse = F.l1_loss(rec, x), F.mse_loss(rec, x)
            kl = post.kl().mean() / x[0].numel()
            loss = l1 + mse + c.vae_kl_weight * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for k, v in (("l1", l1), ("mse", mse), ("kl", kl)):
                sums[k] += float(v.detach())
        log(
            f"idsync VAE epoch {epoch + 1}/{c.vae_epochs}: "
            + " ".join(f"{k} {v / steps:.4f}" for k, v in sums.items())
            + f" ({time.perf_counter() - t0:.0f}s)"
        )
        _save_state(
            out / VAE_CHECKPOINT, {"key": key, "epoch": epoch + 1, "vae": vae.state_dict(), "opt": opt.state_dict()}
        )
        note_saved("idsync VAE", f"epoch {epoch + 1} checkpoint in {out / VAE_CHECKPOINT}")
    vae.eval()
    with torch.no_grad():  # Stable Diffusion's convention: unit-variance latents after scaling
        sample = torch.cat(
            [
                vae.encode(to_signed(feed.batch(torch.arange(s, min(s + 64, len(feed))))).to(device)).latent_dist.mean
                for s in range(0, min(len(feed), 512), 64)
            ]
        )
    vae.register_to_config(scaling_factor=float(1.0 / sample.std().clamp_min(1e-6)))
    with atomic_dir(folder) as tmp:
        vae.save_pretrained(tmp)
        atomic_write_json(tmp / VAE_INDEX, {"key": key, "dataset_dvc_md5": digest, "epochs": c.vae_epochs})
    (out / VAE_CHECKPOINT).unlink(missing_ok=True)
    log(f"idsync VAE saved to {folder} (scaling factor {vae.config.scaling_factor:.3f})")
    return vae


@torch.no_grad()
def encode_latents(
    vae, feed: Feeder, device: torch.device, batch: int = 64, progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior (mean, std) of every photo and of its mirror image: ``[2, N, C, h, w]`` each (CPU)."""
    means, stds = [], []
    for flip in (False, True):
        m, s = [], []
        for imgs, _ in track(
            feed.ordered(batch),
            total=math.ceil(len(feed) / batch),
            unit="batch",
            desc=f"idsync latents{' (mirrored)' if flip else ''}",
            disable=not progress,
        ):
            x = to_signed(imgs).to(device)
            post = vae.encode(x.flip(-1) if flip else x).latent_dist
            m.append(post.mean.cpu())
            s.append(post.std.cpu())
        means.append(torch.cat(m))
        stds.append(torch.cat(s))
    return torch.stack(means), torch.stack(stds)
