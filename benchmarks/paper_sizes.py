"""The paper-size recipes (experiments/paper/): parameters, FLOPs and CPU seconds per step, GPU-hours per full run.

    python benchmarks/paper_sizes.py [--recipes vec2face_hsface10k,idsync_paper,synface_paper,frcsyn_protocol]
                                     [--batch 2] [--idsync-batch 1] [--threads 2]

Each recipe file is loaded over params.yaml and its networks are built at the paper's size and resolution, with
random-weight stand-ins for what a user supplies: an IResNet-100 for the ArcFace R100 encoder, an IR-SE-50 FR
model for IDSync's classifier, networks built from the recipe instead of the pretrained IDSync weights, and random
images for the real photos. Per step of the recipe it records

- the parameters that train (and those that only run frozen in the step: encoder, VAE, classifier);
- FLOPs of one training step (``torch.utils.flop_counter.FlopCounterMode``: matmuls, convolutions and
  attention, forward and backward, 2 per multiply-add) per image, or of one generated image;
- CPU seconds of one warm step at ``--batch`` images (IDSync's at ``--idsync-batch``: ≈ 10 GB at 1; the FR
  model's step: the trainer's own epoch timer);
- the process's peak resident memory (each recipe runs in a process of its own);
- GPU-hours of the full run: images × epochs × FLOPs per image ÷ (A100 bf16 dense 312 TFLOPS × 40 %), a
  compute-only bound that leaves out data loading, checkpoints and multi-GPU overhead.

The steps are the platform's own functions: ``vec2face.training.train_step`` (every loss term, the discriminator
on, as in the paper's last 20 epochs), ``idsync.training.idsync_loss`` + backward (one micro-batch: the AdamW
update comes once per 64 of them and is not run here; its state is 8 bytes per trained parameter more),
``Vec2Face.generate``, ``idsync.generate.sample_images`` (25 DPM-Solver++ steps, guidance 3: 50 UNet passes),
``render.generate_render`` with identity mixup (written to disk) and the FR ``Trainer``. ``tests/test_paper_recipes.py``
runs the same functions on tiny stand-in data. Writes ``benchmarks/results/paper_sizes.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "experiments" / "paper"
RECIPES = ("vec2face_hsface10k", "idsync_paper", "synface_paper", "frcsyn_protocol")
A100_BF16_TFLOPS, UTILISATION = 312.0, 0.40
# Training-set sizes the recipes do not fix (the user's data): stated in every row that uses them
VEC2FACE_TRAIN_IMAGES = 1_000_000  # assumption: a 1 M-image WebFace4M subset (scale linearly for yours)
IDSYNC_TRAIN_IMAGES = 500_000  # assumption: 0.5 M labelled photos (scale linearly for yours)
FR_CLASSES = 10_000  # the FR head of a 10 k-identity set (HSFace10K, Syn_10K_50, DCFace 0.5 M)


def recipe_config(name: str, *sets: str):
    """The recipe ``experiments/paper/<name>.yaml`` over params.yaml, plus ``--set`` overrides."""
    from facefoundry.config import load_config

    return load_config(ROOT / "params.yaml", [PAPER / f"{name}.yaml"], list(sets))


def count(*modules: torch.nn.Module, trainable: bool | None = None) -> int:
    """Parameters of ``modules`` (each counted once); ``trainable``: only those that do / do not train."""
    seen: dict[int, int] = {}
    for m in modules:
        for p in m.parameters():
            if trainable is None or p.requires_grad == trainable:
                seen[id(p)] = p.numel()
    return sum(seen.values())


def flops(fn: Callable[[], object]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def gpu_hours(total_flops: float) -> float:
    return total_flops / (A100_BF16_TFLOPS * 1e12 * UTILISATION) / 3600


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


# -- the recipes' parts at paper size -----------------------------------------------------------------------------


def arcface_r100_standin(image_size: int = 112):
    """ArcFace R100's shape with random weights: the identity encoder a user supplies as a backbone.pth."""
    from facefoundry.identity.encoders import TorchFREncoder
    from facefoundry.models.iresnet import build_backbone

    torch.manual_seed(0)
    return TorchFREncoder(build_backbone("r100", image_size, 512), input_size=image_size, name="arcface_r100_standin")


@dataclass
class Vec2FaceParts:
    model: torch.nn.Module
    disc: torch.nn.Module
    encoder: torch.nn.Module
    train: Callable[[], dict[str, float]]  # one generator + discriminator update on the batch
    generate: Callable[[], torch.Tensor]  # one generation batch (images in [-1, 1])


def vec2face_parts(cfg, images: torch.Tensor, vectors: torch.Tensor | None = None, encoder=None) -> Vec2FaceParts:
    """Vec2Face at ``cfg.vec2face``'s size, its loss through ``encoder`` (default: the R100 stand-in), AdamW."""
    from facefoundry.generators.vec2face.losses import Vec2FaceLoss
    from facefoundry.generators.vec2face.training import (
        build_discriminator,
        build_generator,
        learning_rate,
        loss_weights,
        train_step,
    )

    v = cfg.vec2face
    encoder = (encoder or arcface_r100_standin(v.image_size)).eval()
    if vectors is None:
        with torch.no_grad():
            vectors = encoder((images + 1) / 2)  # the training photos' own identity vectors, as the platform's cache
    torch.manual_seed(cfg.base.seed)
    model, disc = build_generator(v, encoder.dim), build_discriminator(v)
    loss_fn = Vec2FaceLoss(encoder, loss_weights(v), v.perceptual_net)
    betas = (float(v.betas[0]), float(v.betas[1]))
    opt_g = torch.optim.AdamW(model.parameters(), lr=learning_rate(v), betas=betas, weight_decay=v.weight_decay)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=learning_rate(v), betas=betas, weight_decay=v.weight_decay)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    model.train()
    disc.train()

    def train() -> dict[str, float]:
        return train_step(model, disc, loss_fn, images, vectors, opt_g, opt_d, scaler, True, False, v.grad_clip)

    def generate() -> torch.Tensor:
        with torch.no_grad():
            return model.generate(vectors, generator=torch.Generator().manual_seed(1), batch_size=len(vectors))

    return Vec2FaceParts(model, disc, encoder, train, generate)


@dataclass
class IDSyncParts:
    model: object  # IDSync
    classifier: torch.nn.Module
    params: list[torch.nn.Parameter]
    train: Callable[[], dict[str, float]]  # one micro-batch: L_denoise + λ·L_id, backward, gradient clipping
    generate: Callable[[], torch.Tensor]
    latents: torch.Tensor = field(repr=False, default_factory=lambda: torch.zeros(0))


def idsync_parts(cfg, images: torch.Tensor, labels: torch.Tensor, classes: int, tmp: Path) -> IDSyncParts:
    """IDSync at ``cfg.idsync``'s size built from the recipe (no init folder), the CE identity loss through an
    IR-SE-50 stand-in classifier over ``classes`` identities; latents encoded by the (frozen) VAE as training does."""
    from facefoundry.data.transforms import Preprocess
    from facefoundry.generators.idsync.generate import sample_images
    from facefoundry.generators.idsync.losses import ClassifierIdentityLoss
    from facefoundry.generators.idsync.model import build_vae, quiet
    from facefoundry.generators.idsync.training import build_model, draw, idsync_loss
    from facefoundry.models.bundle import FRModel
    from facefoundry.models.heads import MarginHead
    from facefoundry.models.iresnet import build_backbone

    quiet()
    c, g = cfg.idsync, cfg.generate.idsync
    torch.manual_seed(cfg.base.seed)
    clf_dir = tmp / "irse50_classifier"
    FRModel(build_backbone("r50_se", 112, 512), Preprocess(image_size=112), {}, MarginHead(classes, 512)).save(clf_dir)
    id_loss = ClassifierIdentityLoss(clf_dir, classes)
    model = build_model(c.model_copy(update={"init": None}), build_vae(c), 512, torch.device("cpu"))
    model.vae.eval().requires_grad_(False)
    model.text_encoder.get_input_embeddings().requires_grad_(False)
    with torch.no_grad():
        latents = model.vae.encode(images).latent_dist.sample() * model.scaling
    vectors = torch.nn.functional.normalize(torch.randn(len(images), 512, generator=torch.Generator().manual_seed(2)))
    params = [p for m in (model.unet, model.text_encoder) for p in m.parameters() if p.requires_grad]
    model.unet.train()
    model.text_encoder.train()

    def train() -> dict[str, float]:
        # every row conditioned (dropout 0), so the identity branch runs on the whole micro-batch
        d = draw(torch.Generator().manual_seed(1), tuple(latents.shape), c.train_timesteps, 0.0)
        loss, parts = idsync_loss(model, latents, vectors, labels, d, c.identity_weight, id_loss, c.identity_batch)
        (loss / c.grad_accumulation).backward()
        parts["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, c.grad_clip))
        for p in params:
            p.grad = None
        return parts

    def generate() -> torch.Tensor:
        model.unet.eval()
        model.text_encoder.eval()
        try:
            return sample_images(model, vectors[:1], g, torch.Generator().manual_seed(3))
        finally:
            model.unet.train()
            model.text_encoder.train()

    return IDSyncParts(model, id_loss, params, train, generate, latents)


def write_dataset(path: Path, identities: int, per_identity: int, size: int, seed: int = 0) -> Path:
    """Random labelled images (the FR step's stand-in data; the tests use tests.conftest.make_dataset)."""
    from facefoundry.data.writer import DatasetWriter

    rng = np.random.default_rng(seed)
    with DatasetWriter(path, {"generator": "test", "num_classes": identities, "image_size": size}, "png") as w:
        for label in range(identities):
            for k in range(per_identity):
                w.add(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), label, f"id_{label:03d}", "test", {"k": k})
    return path


def fr_config(name: str, dataset: Path, out: Path, batch: int, epochs: int = 1, *sets: str):
    """The recipe's FR training on ``dataset``, at ``batch`` images a step, ``epochs`` epochs, no export."""
    return recipe_config(
        name,
        f"train.dataset={dataset}",
        f"train.out={out}",
        f"train.metrics={out / 'train.json'}",
        f"train.batch_size={batch}",
        f"train.epochs={epochs}",
        "train.min_images_per_identity=1",
        "train.export_onnx=false",
        "train.registered_model=null",
        "base.device=cpu",
        *sets,
    )


def render_config(name: str, out: Path, identities: int = 2, per_identity: int = 2):
    """The recipe's render generation (its image size, identity mixup) at ``identities × per_identity``."""
    n = identities * per_identity
    return recipe_config(
        name,
        f"generate.out={out}",
        f"generate.identities={identities}",
        f"generate.images_per_identity={per_identity}",
        f"generate.batch_size={n}",
        "base.device=cpu",
    )


def fr_flops_per_image(cfg, classes: int = FR_CLASSES) -> tuple[int, int]:
    """(FLOPs of one forward + backward per image, parameters) of the recipe's FR backbone + margin head."""
    from facefoundry.models.heads import MarginHead
    from facefoundry.models.iresnet import build_backbone

    b, h = cfg.train.backbone, cfg.train.head
    net = build_backbone(b.name, cfg.base.image_size, b.embedding_size, b.width, b.layers, b.se, b.dropout)
    head = MarginHead(classes, b.embedding_size, h.name, h.s, h.m1, h.m2, h.m3)
    x = torch.randn(2, 3, cfg.base.image_size, cfg.base.image_size)
    labels = torch.tensor([0, 1])

    def step() -> None:
        emb, norms = net(x)
        head(emb, norms, labels).backward()

    return flops(step) // 2, count(net, head)


# -- measuring one recipe ----------------------------------------------------------------------------------------


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _fr_row(name: str, cfg, tmp: Path, batch: int, dataset: Path | None, what: str) -> dict:
    """The FR model's step: the trainer's own epoch timer on a warm second epoch of one step."""
    from facefoundry.train.trainer import Trainer

    per_image, params = fr_flops_per_image(cfg)
    dataset = dataset or write_dataset(tmp / "fr_data", batch, 1, cfg.base.image_size)
    tr = Trainer(fr_config(name, dataset, tmp / "fr_out", batch, 2), log=lambda m: None)
    hist = tr.fit().history
    steps = tr.feeder.steps_per_epoch()
    images = cfg.generate.identities * cfg.generate.images_per_identity if name != "frcsyn_protocol" else 500_000
    run = images * cfg.train.epochs * per_image
    return {
        "step": what,
        "batch": batch,
        "trainable_M": params / 1e6,
        "frozen_M": 0.0,
        "gflops_per_image": per_image / 1e9,
        "cpu_seconds_per_step": hist[-1].seconds / steps,
        "full_run": f"{images:,} images × {cfg.train.epochs} epochs",
        "full_run_pflops": run / 1e15,
        "gpu_hours": gpu_hours(run),
        "amp": str(tr.amp),
    }


def measure(name: str, batch: int) -> list[dict]:
    rows: list[dict] = []
    cfg = recipe_config(name)
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        if name == "vec2face_hsface10k":
            v = cfg.vec2face
            images = torch.rand(batch, 3, v.image_size, v.image_size) * 2 - 1
            parts = vec2face_parts(cfg, images)
            step_flops = flops(parts.train)  # also the warm-up step
            secs = _timed(parts.train)
            train_images = VEC2FACE_TRAIN_IMAGES * v.epochs
            rows.append(
                {
                    "step": "train-vec2face (generator + discriminator update, GAN on)",
                    "batch": batch,
                    "trainable_M": count(parts.model, parts.disc) / 1e6,
                    "frozen_M": count(parts.encoder) / 1e6,
                    "gflops_per_image": step_flops / batch / 1e9,
                    "cpu_seconds_per_step": secs,
                    "full_run": f"{VEC2FACE_TRAIN_IMAGES:,} images (assumed) × {v.epochs} epochs",
                    "full_run_pflops": train_images * step_flops / batch / 1e15,
                    "gpu_hours": gpu_hours(train_images * step_flops / batch),
                }
            )
            gen_flops = flops(parts.generate)
            secs = _timed(parts.generate)
            n = cfg.generate.identities * cfg.generate.images_per_identity
            rows.append(
                {
                    "step": "generate (Vec2Face.generate; no AttrOP)",
                    "batch": batch,
                    "trainable_M": 0.0,
                    "frozen_M": count(parts.model) / 1e6,
                    "gflops_per_image": gen_flops / batch / 1e9,
                    "cpu_seconds_per_step": secs,
                    "full_run": f"{n:,} images",
                    "full_run_pflops": n * gen_flops / batch / 1e15,
                    "gpu_hours": gpu_hours(n * gen_flops / batch),
                }
            )
        elif name == "idsync_paper":
            c = cfg.idsync
            images = torch.rand(batch, 3, c.image_size, c.image_size) * 2 - 1
            parts = idsync_parts(cfg, images, torch.arange(batch) % 2, FR_CLASSES, tmp)
            step_flops = flops(parts.train)
            secs = _timed(parts.train)
            trainable = sum(p.numel() for p in parts.params)
            train_images = IDSYNC_TRAIN_IMAGES * c.epochs
            rows.append(
                {
                    "step": "train-idsync (one micro-batch: UNet + text encoder, λ·CE through VAE decoder + IR-SE-50)",
                    "batch": batch,
                    "trainable_M": trainable / 1e6,
                    "frozen_M": (count(parts.model.vae) + count(parts.classifier)) / 1e6,
                    "gflops_per_image": step_flops / batch / 1e9,
                    "cpu_seconds_per_step": secs,
                    "full_run": f"{IDSYNC_TRAIN_IMAGES:,} images (assumed) × {c.epochs} epochs",
                    "full_run_pflops": train_images * step_flops / batch / 1e15,
                    "gpu_hours": gpu_hours(train_images * step_flops / batch),
                    "adamw_state_gb": 8 * trainable / 1e9,
                }
            )
            del images
            gen_flops = flops(parts.generate)  # one image, 25 steps × 2 (guidance)
            secs = _timed(parts.generate)
            n = cfg.generate.identities * cfg.generate.images_per_identity
            rows.append(
                {
                    "step": f"generate (DPM-Solver++ {cfg.generate.idsync.steps} steps, guidance "
                    f"{cfg.generate.idsync.guidance:g}, VAE decode)",
                    "batch": 1,
                    "trainable_M": 0.0,
                    "frozen_M": count(parts.model.unet, parts.model.text_encoder, parts.model.vae) / 1e6,
                    "gflops_per_image": gen_flops / 1e9,
                    "cpu_seconds_per_step": secs,
                    "full_run": f"{n:,} images",
                    "full_run_pflops": n * gen_flops / 1e15,
                    "gpu_hours": gpu_hours(n * gen_flops),
                }
            )
        elif name == "synface_paper":
            from facefoundry.generators.render.generate import generate_render

            gcfg = render_config(name, tmp / "synface", identities=2, per_identity=batch)
            generate_render(gcfg, log=lambda m: None)  # warm-up (mesh, rasteriser)
            gcfg = render_config(name, tmp / "synface2", identities=2, per_identity=batch)
            secs = _timed(lambda: generate_render(gcfg, log=lambda m: None))
            n = cfg.generate.identities * cfg.generate.images_per_identity
            per = secs / (2 * batch)
            rows.append(
                {
                    "step": "generate (render + identity mixup, PNGs written)",
                    "batch": 2 * batch,
                    "trainable_M": 0.0,
                    "frozen_M": 0.0,
                    "gflops_per_image": float("nan"),  # a rasteriser: FlopCounterMode counts no matmul work
                    "cpu_seconds_per_step": secs,
                    "full_run": f"{n:,} images",
                    "full_run_pflops": float("nan"),
                    "gpu_hours": float("nan"),
                    "cpu_core_hours": n * per * torch.get_num_threads() / 3600,
                }
            )
            rows.append(
                _fr_row(name, cfg, tmp, batch, tmp / "synface2", "train (IResNet-50, ArcFace, mixup soft labels)")
            )
        elif name == "frcsyn_protocol":
            rows.append(_fr_row(name, cfg, tmp, batch, None, "train (IResNet-50, ArcFace m 0.5)"))
        else:
            raise SystemExit(f"unknown recipe {name!r}: one of {', '.join(RECIPES)}")
    for r in rows:
        r.update(recipe=name, peak_rss_gb=peak_rss_gb(), threads=torch.get_num_threads())
    return rows


def _num(x: float, fmt: str) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def table(rows: list[dict]) -> str:
    head = (
        "| recipe | step | batch | trained params (M) | frozen params (M) | GFLOPs / image | CPU s / step "
        "| peak RSS (GB) | full run | GPU-hours (A100, 40 %) |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        gpu = _num(r["gpu_hours"], ".1f")
        if "cpu_core_hours" in r:
            gpu = f"– ({r['cpu_core_hours']:.0f} CPU core-hours)"
        lines.append(
            f"| {r['recipe']} | {r['step']} | {r['batch']} | {_num(r['trainable_M'], '.1f')} | "
            f"{_num(r['frozen_M'], '.1f')} | {_num(r['gflops_per_image'], '.1f')} | "
            f"{r['cpu_seconds_per_step']:.2f} | {r['peak_rss_gb']:.1f} | {r['full_run']} | {gpu} |"
        )
    return "\n".join(lines)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--idsync-batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # measure one recipe in this process, print its rows as JSON
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(args.one, args.batch)))
        return
    from benchmarks._common import save

    rows: list[dict] = []
    for name in args.recipes.split(","):
        batch = args.idsync_batch if name == "idsync_paper" else args.batch
        cmd = [sys.executable, __file__, "--one", name, "--batch", str(batch), "--threads", str(args.threads)]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode:
            raise SystemExit(f"{name}: failed\n{proc.stderr[-3000:]}")
        rows += json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{name}: done", file=sys.stderr)
    save(
        "paper_sizes",
        {
            "batch": args.batch,
            "idsync_batch": args.idsync_batch,
            "gpu_assumption": f"A100 bf16 dense {A100_BF16_TFLOPS:g} TFLOPS at {UTILISATION:.0%} utilisation, "
            "compute only",
            "assumed_training_images": {"vec2face": VEC2FACE_TRAIN_IMAGES, "idsync": IDSYNC_TRAIN_IMAGES},
            "fr_head_classes": FR_CLASSES,
            "rows": rows,
        },
    )
    print(table(rows))


if __name__ == "__main__":
    main()
