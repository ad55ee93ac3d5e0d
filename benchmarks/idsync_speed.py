"""IDSync: generation images/s at 25 DPM-Solver++ steps, and the training step (platform ÷ bare torch).

    python benchmarks/idsync_speed.py [--config default|real] [--threads 2]

``default`` is params.yaml's toy, ``real`` the model of experiments/idsync_real.yaml; the networks are
built from config (timing does not depend on the weights). Generation = ``sample_images`` at batch 64
with the paper's 25 steps and guidance 3 (two UNet passes per step), and without guidance. Training =
``idsync_loss`` (conditioning through the text encoder, ε-MSE, λ·identity loss on the decoded x̂₀ —
CE through a classifier of the default's FR size for ``default``, the dlib cosine for ``real``) against a
bare torch step of the same UNet with fixed conditioning and the MSE alone. The paper's figure:
0.5M images in 24 h on one RTX 3090 (≈ 5.8 images/s at 224 px, SD-2.1).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks._common import best_of, save
    from facefoundry.config import load_config
    from facefoundry.generators.idsync.conditioning import toy_tokenizer
    from facefoundry.generators.idsync.generate import sample_images
    from facefoundry.generators.idsync.losses import ClassifierIdentityLoss, CosineIdentityLoss
    from facefoundry.generators.idsync.model import IDSync, build_scheduler, build_text_encoder, build_unet, build_vae
    from facefoundry.generators.idsync.training import draw, idsync_loss

    ap = argparse.ArgumentParser()
    ap.add_argument("--config", choices=["default", "real"], default="default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "params.yaml", [root / "experiments/idsync_real.yaml"] if args.config == "real" else [])
    c, g = cfg.idsync, cfg.generate.idsync
    torch.manual_seed(0)
    tok = toy_tokenizer()
    latent = c.image_size // 2 ** (len(c.vae_channels) - 1)
    model = IDSync(
        build_vae(c),
        build_unet(c, latent, c.latent_channels, c.text_width),
        build_text_encoder(c, tok),
        tok,
        build_scheduler(c),
        {"image_size": c.image_size},
    )
    for m in (model.vae, model.unet, model.text_encoder):
        m.eval().requires_grad_(False)
    res = {
        "config": args.config,
        "image_size": c.image_size,
        "latent": latent,
        "steps": g.steps,
        "unet_parameters_M": sum(p.numel() for p in model.unet.parameters()) / 1e6,
        "text_encoder_parameters_M": sum(p.numel() for p in model.text_encoder.parameters()) / 1e6,
        "vae_parameters_M": sum(p.numel() for p in model.vae.parameters()) / 1e6,
    }
    vec = torch.nn.functional.normalize(torch.randn(64, 128), dim=1)
    for guidance in (g.guidance, 1.0):
        gc = g.model_copy(update={"guidance": guidance})
        t = best_of(lambda gc=gc: sample_images(model, vec, gc, torch.Generator().manual_seed(0)), args.repeats)
        res[f"generate_images_per_second_guidance_{guidance:g}"] = 64 / t
    res["paper_images_per_second_rtx3090_224px"] = 500_000 / 86_400

    # training: platform step vs bare step, batch of idsync.batch_size
    model.unet.train().requires_grad_(True)
    model.text_encoder.train().requires_grad_(True)
    model.text_encoder.get_input_embeddings().requires_grad_(False)
    params = [p for m in (model.unet, model.text_encoder) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    b = c.batch_size
    lat = torch.randn(b, c.latent_channels, latent, latent)
    v = vec[:b] if b <= 64 else torch.nn.functional.normalize(torch.randn(b, 128), dim=1)
    labels = torch.zeros(b, dtype=torch.long)
    with tempfile.TemporaryDirectory() as tmp:
        if c.identity_loss == "ce":
            from facefoundry.data.transforms import Preprocess
            from facefoundry.models.bundle import FRModel
            from facefoundry.models.heads import MarginHead
            from facefoundry.models.iresnet import IResNet

            t = cfg.train.backbone
            FRModel(
                IResNet(t.layers or [1, 1, 1, 1], t.width, t.embedding_size, cfg.base.image_size),
                Preprocess(image_size=cfg.base.image_size),
                {},
                MarginHead(100, t.embedding_size),
            ).save(tmp)
            id_loss = ClassifierIdentityLoss(tmp, 100)
        else:
            from facefoundry.identity import load_encoder

            id_loss = CosineIdentityLoss(load_encoder(c.encoder))
        hidden = model.condition(v).detach()

        def bare() -> None:
            d = draw(torch.Generator().manual_seed(1), tuple(lat.shape), 1000, 0.0)
            noisy = model.scheduler.add_noise(lat, d.noise, d.timesteps)
            loss = torch.nn.functional.mse_loss(model.unet(noisy, d.timesteps, hidden).sample, d.noise)
            opt.zero_grad()
            loss.backward()
            opt.step()

        def platform(weight: float) -> None:
            d = draw(torch.Generator().manual_seed(1), tuple(lat.shape), 1000, c.condition_dropout)
            loss, _ = idsync_loss(model, lat, v, labels, d, weight, id_loss, c.identity_batch)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, c.grad_clip)
            opt.step()

        t_bare = best_of(bare, args.repeats)
        t_plain = best_of(lambda: platform(0.0), args.repeats)
        t_id = best_of(lambda: platform(c.identity_weight or 0.01), args.repeats)
    res.update(
        {
            "batch": b,
            "identity_loss": c.identity_loss,
            "identity_batch": c.identity_batch,
            "bare_step_ms": 1000 * t_bare,
            "platform_step_lambda0_ms": 1000 * t_plain,
            "platform_step_identity_ms": 1000 * t_id,
            "ratio_lambda0_to_bare": t_plain / t_bare,
            "ratio_identity_to_bare": t_id / t_bare,
            "train_images_per_second": b / t_id,
        }
    )
    save(f"idsync_speed_{args.config}", res)


if __name__ == "__main__":
    main()
