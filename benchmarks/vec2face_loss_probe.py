"""Vec2Face loss probe: which loss terms let the generator's output depend on its input? (README)

    python benchmarks/vec2face_loss_probe.py [--steps 200] [--images 256] [--variants full mse_only ...]

Needs `outputs/real_aligned` (`facefoundry align`, step 1 of experiments/vec2face_real.sh) and the dlib
identity vectors of those crops (any `outputs/vec2face_real*/id_vectors/*.npy` that `train-vec2face`
cached). For each variant, a fresh generator of `experiments/vec2face_real.yaml`'s size (same seed) trains
for `--steps` steps of batch 32 on the same `--images` crops, with that variant's loss weights, through the
trainer's own `train_step` (no discriminator). Every 50 steps it reports the training MSE and, on 64 of the
crops (generation mask 0.15), the reconstruction MSE and the **output spread**: the per-pixel variance of
the generated images across photos. A generator that ignores its input makes the same face for every
vector (spread 0); the crops' own spread is ≈ 0.21 in [-1, 1]. Writes benchmarks/results/vec2face_loss_probe.json.
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from pathlib import Path

import numpy as np

VARIANTS = {  # loss-weight overrides of the recipe (identity 5, perceptual 0.2, SSIM 0.1, token 1, MSE 1)
    "full": {},
    "mse_only": {"identity_weight": 0.0, "token_weight": 0.0, "perceptual_weight": 0.0, "ssim_weight": 0.0},
    "no_identity": {"identity_weight": 0.0},
    "identity_1": {"identity_weight": 1.0},
    "mse_token": {"identity_weight": 0.0, "perceptual_weight": 0.0, "ssim_weight": 0.0},
    "mse_perceptual_ssim": {"identity_weight": 0.0, "token_weight": 0.0},
    "no_token": {"token_weight": 0.0},
}


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    import torch

    from benchmarks._common import save
    from facefoundry.config import load_config
    from facefoundry.data.sources import open_source
    from facefoundry.generators.vec2face.losses import Vec2FaceLoss
    from facefoundry.generators.vec2face.training import build_discriminator, build_generator, loss_weights, train_step
    from facefoundry.identity import load_encoder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cached = sorted(glob.glob(str(root / "outputs/vec2face_real*/id_vectors/*.npy")))
    if not (root / "outputs/real_aligned").is_dir() or not cached:
        sys.exit("needs outputs/real_aligned and cached dlib vectors: run experiments/vec2face_real.sh first")
    cfg = load_config(root / "params.yaml", [root / "experiments/vec2face_real.yaml"])
    vectors = torch.from_numpy(np.load(cached[0]))
    src = open_source(root / "outputs/real_aligned")
    if len(vectors) != len(src):
        sys.exit(f"{cached[0]}: {len(vectors)} vectors for {len(src)} crops")
    pick = np.random.default_rng(0).choice(len(src), a.images, replace=False)
    x = torch.from_numpy(np.stack([src.load(int(i)) for i in pick])).permute(0, 3, 1, 2).float() / 127.5 - 1
    v_in = vectors[pick]
    results: dict[str, list[dict]] = {}
    for name in a.variants:
        v = cfg.vec2face.model_copy(update=VARIANTS[name])
        torch.manual_seed(0)
        model, disc = build_generator(v, int(vectors.shape[1])), build_discriminator(v)
        encoder = load_encoder("dlib").eval()  # after the generator: the same random stream for every variant
        loss_fn = Vec2FaceLoss(encoder, loss_weights(v), v.perceptual_net)
        opt_g = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.99), weight_decay=0.01)
        opt_d = torch.optim.AdamW(disc.parameters(), lr=a.lr, betas=(0.9, 0.99))
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        g = torch.Generator().manual_seed(0)
        t0, rows = time.perf_counter(), []
        for step in range(a.steps):
            b = torch.randint(0, a.images, (32,), generator=g)
            terms = train_step(model, disc, loss_fn, x[b], v_in[b], opt_g, opt_d, scaler, False, False, v.grad_clip)
            if (step + 1) % 50 == 0:
                model.eval()
                with torch.no_grad():
                    out = model(v_in[:64], mask_ratio=0.15, generator=torch.Generator().manual_seed(1)).images
                    out = out.clamp(-1, 1)
                model.train()
                row = {
                    "step": step + 1,
                    "train_mse": terms["mse"],
                    "identity": terms["identity"],
                    "token": terms["token"],
                    "eval_mse": float(((out - x[:64]) ** 2).mean()),
                    "output_spread": float(out.var(0).mean()),
                    "seconds": time.perf_counter() - t0,
                }
                rows.append(row)
                print(
                    f"{name} step {step + 1}: eval mse {row['eval_mse']:.4f}, output spread "
                    f"{row['output_spread']:.4f} ({row['seconds']:.0f} s)",
                    flush=True,
                )
        results[name] = rows
    save(
        "vec2face_loss_probe",
        {
            "steps": a.steps,
            "images": a.images,
            "lr": a.lr,
            "target_spread": float(x.var(0).mean()),
            "variants": results,
        },
    )


if __name__ == "__main__":
    main()
