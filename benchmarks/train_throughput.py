"""Trainer images/s vs a bare torch loop on in-memory tensors (same model), plus loader-only rates.

    python benchmarks/train_throughput.py            # tiny default @56 and IResNet-18 @112
    python benchmarks/train_throughput.py --cases tiny@56   # the default FR model only
    python benchmarks/train_throughput.py --cases tiny@56 --switches amp channels_last compile

The ratio trainer ÷ bare shows what the platform costs (or saves) on top of the raw model step. The bare
loop is plain float32 torch, as a user would write it; the trainer runs as configured (``train.amp``:
bf16 autocast on a CPU with native bf16, fp16 on CUDA; ``train.channels_last``) and, for a like-for-like
figure, with ``amp`` off beside a bare loop under the same bf16 autocast.

``--switches``: each speed switch turned the other way, all else as configured, in the same process:
``amp`` off (where the CPU has native bf16), ``channels_last`` off, ``compile`` on (TorchInductor; not in the
default run: its first epoch spends about a minute compiling, reported as ``compile_extra_s``). Each gives
``trainer_<switch>_images_per_s``, its ratio to the bare loop and ``<switch>_speedup`` (the switch on ÷ off).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import save
from facefoundry.config import load_config
from facefoundry.data.sources import open_source
from facefoundry.data.transforms import Preprocess, random_hflip
from facefoundry.models.iresnet import build_backbone
from facefoundry.train.feed import Feeder
from facefoundry.train.trainer import Trainer
from tests.conftest import make_dataset

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "tiny@56": {
        "base": 56,
        "backbone": {"name": "iresnet", "layers": [1, 1, 1, 1], "width": 16, "embedding_size": 128},
        "steps": 40,
    },
    "r18@112": {"base": 112, "backbone": {"name": "r18", "embedding_size": 512, "width": 64}, "steps": 6},
}
BATCH = 64
SWITCHES = ("amp", "channels_last", "compile")  # train.*: each one measured turned the other way from params.yaml


def bare_loop(bb_cfg: dict, ds: Path, size: int, classes: int, steps: int, amp: torch.dtype | None = None) -> float:
    """SGD steps over the dataset's own images, decoded and normalised in memory beforehand.

    Different batches each step, as training sees: speed depends on image content, and a
    single memorised batch runs measurably slower than real training.
    """
    torch.manual_seed(0)
    m = build_backbone(bb_cfg["name"], size, bb_cfg["embedding_size"], bb_cfg["width"], bb_cfg.get("layers"))
    w = torch.nn.Parameter(torch.randn(classes, bb_cfg["embedding_size"]) * 0.01)
    opt = torch.optim.SGD([*m.parameters(), w], lr=0.1, momentum=0.9, weight_decay=5e-4)
    src = open_source(ds)
    order = torch.randperm(len(src), generator=torch.Generator().manual_seed(0))[: steps * BATCH].view(steps, BATCH)
    pre = Preprocess(image_size=size)
    xs = [pre(torch.from_numpy(np.stack([src.load(int(i)) for i in idx]))) for idx in order]
    ys = [torch.from_numpy(src.labels[idx.numpy()]) for idx in order]

    def step(k: int) -> None:
        x, y = xs[k], ys[k]
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            emb, _ = m(x)
        loss = F.cross_entropy(32 * F.linear(emb.float(), F.normalize(w, dim=1)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for k in range(steps):  # warm up exactly as long as the trainer's first (unmeasured) epoch
        step(k)
    t0 = time.perf_counter()
    for k in range(steps):
        step(k)
    return steps * BATCH / (time.perf_counter() - t0)


def loader_rate(ds: Path, size: int, preload: bool) -> float:
    src = open_source(ds)
    feeder = Feeder(src, size, BATCH, preload_max_mb=4096 if preload else 0)
    pre = Preprocess(image_size=size)
    t0, n = time.perf_counter(), 0
    for _ in range(3):
        for images, labels in feeder.epoch(0):
            random_hflip(pre(images), 0.5)
            n += len(labels)
    return n / (time.perf_counter() - t0)


def trainer_rate(case: dict, ds: Path, out: Path, **switches: bool) -> float:
    """Epoch 2's images/s (epoch 1 warms up, and compiles under train.compile)."""
    return trainer_epochs(case, ds, out, **switches)[-1].images_per_second


def trainer_epochs(case: dict, ds: Path, out: Path, **switches: bool) -> list:
    size = case["base"]
    cfg = load_config(
        ROOT / "params.yaml",
        sets=[
            f"base.image_size={size}",
            f"train.dataset={ds}",
            f"train.out={out}",
            "train.epochs=2",
            f"train.batch_size={BATCH}",
            "train.export_onnx=false",
            "train.log_every=100000",
            *(f"train.{k}={str(v).lower()}" for k, v in switches.items()),
            *(f"train.backbone.{k}={v}" for k, v in case["backbone"].items()),
        ],
    )
    return Trainer(cfg, log=lambda _m: None).fit().history  # epoch 2 is warm


def main() -> None:
    import argparse

    from facefoundry.device import amp_dtype

    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--switches", nargs="*", default=["amp", "channels_last"], choices=SWITCHES)
    args = ap.parse_args()
    cpu_amp = amp_dtype(torch.device("cpu"))
    configured = load_config(ROOT / "params.yaml").train
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases:
            case = CASES[name]
            size, steps = case["base"], case["steps"]
            classes = 32
            ds = make_dataset(
                Path(tmp) / f"ds{size}", identities=classes, per_identity=BATCH * steps // classes, size=size
            )
            bare = bare_loop(case["backbone"], ds, size, classes, steps)
            platform_rate = trainer_rate(case, ds, Path(tmp) / f"t{size}")
            row = {
                "amp": str(cpu_amp).removeprefix("torch.") if cpu_amp else "off (no native bf16)",
                "bare_images_per_s": round(bare, 1),
                "trainer_images_per_s": round(platform_rate, 1),
                "trainer_over_bare": round(platform_rate / bare, 3),
            }
            if cpu_amp is not None and "amp" in args.switches:
                # like for like: the trainer without AMP against the bare fp32 loop, and both with
                fp32 = trainer_rate(case, ds, Path(tmp) / f"f{size}", amp=False)
                bare_amp = bare_loop(case["backbone"], ds, size, classes, steps, cpu_amp)
                row.update(
                    trainer_fp32_images_per_s=round(fp32, 1),
                    trainer_fp32_over_bare=round(fp32 / bare, 3),
                    amp_speedup=round(platform_rate / fp32, 3),
                    bare_amp_images_per_s=round(bare_amp, 1),
                    trainer_over_bare_amp=round(platform_rate / bare_amp, 3),
                )
            for switch in [s for s in args.switches if s != "amp"]:
                on = not getattr(configured, switch)  # the other way from params.yaml
                epochs = trainer_epochs(case, ds, Path(tmp) / f"{switch}{size}", **{switch: on})
                rate = epochs[-1].images_per_second
                row.update(
                    {
                        f"trainer_{switch}_{'on' if on else 'off'}_images_per_s": round(rate, 1),
                        f"trainer_{switch}_{'on' if on else 'off'}_over_bare": round(rate / bare, 3),
                        f"{switch}_speedup": round((rate / platform_rate) if on else (platform_rate / rate), 3),
                    }
                )
                if switch == "compile":  # epoch 1 compiles; epoch 2 runs as long as any later epoch
                    row["compile_extra_s"] = round(epochs[0].seconds - epochs[-1].seconds, 1)
            row.update(
                loader_preloaded_images_per_s=round(loader_rate(ds, size, True)),
                loader_streaming_images_per_s=round(loader_rate(ds, size, False)),
            )
            results[name] = row
            print(name, row, flush=True)
    save("train_throughput", results)


if __name__ == "__main__":
    main()
