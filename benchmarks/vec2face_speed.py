"""Vec2Face: training step time (platform step ÷ bare torch step) and generation images/s.

    python benchmarks/vec2face_speed.py [--config default|real] [--steps N]

``default`` is params.yaml's toy, ``real`` the model of experiments/vec2face_real.yaml. The
platform's ``train_step`` (every loss term, identity loss through the dlib port, clipping) is
timed against a bare torch step on the same model with the MSE loss alone, so the ratio shows
what the paper's loss costs. Generation = ``Vec2Face.generate`` (no AttrOP) at batch 100, and
with AttrOP's per-iteration cost (decoder + encoder forward and backward). The paper claims
generation 311× faster than Arc2Face's diffusion; this platform's IDSync (diffusion) is the
comparison to make when it exists.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def _setup() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    _setup()
    from benchmarks._common import best_of, save
    from facefoundry.config import load_config
    from facefoundry.generators.vec2face.losses import Vec2FaceLoss
    from facefoundry.generators.vec2face.training import build_discriminator, build_generator, loss_weights, train_step
    from facefoundry.identity import load_encoder

    ap = argparse.ArgumentParser()
    ap.add_argument("--config", choices=["default", "real"], default="default")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "params.yaml", [root / "experiments/vec2face_real.yaml"] if args.config == "real" else [])
    v = cfg.vec2face
    enc = load_encoder(v.encoder).eval()
    torch.manual_seed(0)
    model, disc = build_generator(v, enc.dim), build_discriminator(v)
    b, s = v.batch_size, v.image_size
    images = torch.rand(b, 3, s, s) * 2 - 1
    vectors = torch.nn.functional.normalize(torch.randn(b, enc.dim), dim=1)
    loss_fn = Vec2FaceLoss(enc, loss_weights(v), v.perceptual_net)
    opt_g = torch.optim.AdamW(model.parameters(), lr=1e-4)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    model.train()

    def platform_step(use_disc: bool) -> None:
        train_step(model, disc, loss_fn, images, vectors, opt_g, opt_d, scaler, use_disc, False, v.grad_clip)

    def bare_step() -> None:
        out = model(vectors, images)
        loss = torch.nn.functional.mse_loss(out.images, images)
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()

    res: dict = {
        "config": args.config,
        "batch": b,
        "image_size": s,
        "width": v.width,
        "depth": v.depth,
        "generator_parameters_M": sum(p.numel() for p in model.parameters()) / 1e6,
    }
    t_bare = best_of(bare_step, args.steps)
    t_full = best_of(lambda: platform_step(False), args.steps)
    t_gan = best_of(lambda: platform_step(True), args.steps)
    res.update(
        {
            "bare_step_ms": 1000 * t_bare,
            "platform_step_ms": 1000 * t_full,
            "platform_step_gan_ms": 1000 * t_gan,
            "ratio_platform_to_bare": t_full / t_bare,
            "train_images_per_second": b / t_full,
        }
    )
    model.eval()
    gen_vectors = torch.nn.functional.normalize(torch.randn(100, enc.dim), dim=1)
    t_gen = best_of(lambda: model.generate(gen_vectors, batch_size=100), 3)
    res["generate_images_per_second"] = 100 / t_gen

    def attrop_iteration() -> None:  # one AttrOP step on 32 vectors: decode, encode, backward
        x = gen_vectors[:32].clone().requires_grad_(True)
        imgs = (model(x, mask_ratio=0.15).images + 1) / 2
        (1 - (enc(imgs) * gen_vectors[:32]).sum(1)).sum().backward()

    res["attrop_iterations_per_second_batch32"] = 1 / best_of(attrop_iteration, 3)
    save(f"vec2face_speed_{args.config}", res)
    print(f"\n| Vec2Face ({args.config}: {s} px, width {v.width}, depth {v.depth}, batch {b}) | value |\n|---|---|")
    print(f"| bare torch step (MSE only) | {1000 * t_bare:.0f} ms |")
    print(
        f"| platform step (all terms, dlib identity + perceptual) | {1000 * t_full:.0f} ms "
        f"({t_full / t_bare:.1f}× bare) |"
    )
    print(f"| platform step with the discriminator on | {1000 * t_gan:.0f} ms |")
    print(f"| generation (batch 100, no AttrOP) | {100 / t_gen:.0f} images/s |")
    print(f"| one AttrOP iteration, 32 vectors | {1000 / res['attrop_iterations_per_second_batch32']:.0f} ms |")


if __name__ == "__main__":
    main()
