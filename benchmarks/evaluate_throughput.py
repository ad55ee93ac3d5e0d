"""Evaluator time (load .bin → embed with flip → 10-fold) vs pure forward time, at 112×112.

    python benchmarks/evaluate_throughput.py [PAIRS]    # default 6000 pairs (LFW-sized)
The ratio shows the protocol's overhead over the network's own forward passes.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import save
from facefoundry.config import load_config
from facefoundry.data.transforms import Preprocess
from facefoundry.models.bundle import FRModel
from facefoundry.models.iresnet import build_backbone
from facefoundry.stages.evaluate import evaluate_model
from facefoundry.verification.binfile import write_bin

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"tiny": ("iresnet", 16, [1, 1, 1, 1], 128), "r18": ("r18", 64, None, 512)}


def main(pairs: int, models: list[str]) -> None:
    rng = np.random.default_rng(0)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        images = rng.integers(0, 255, (2 * pairs, 112, 112, 3), dtype=np.uint8)
        path = Path(tmp) / "pairs.bin"
        write_bin(path, images, rng.random(pairs) < 0.5, fmt="png")  # lossless: baseline sees the same pixels
        for name in models:
            kind, width, layers, emb = MODELS[name]
            bb = build_backbone(kind, 112, emb, width, layers).eval()
            model = FRModel(bb, Preprocess(image_size=112), {})
            cfg = load_config(ROOT / "params.yaml", sets=["base.image_size=112"])
            bs = cfg.evaluate.batch_size
            pre = Preprocess(image_size=112)

            def pure_forward(bb=bb, pre=pre, bs=bs) -> float:
                """Only the network's forward passes (image + mirror) on the same pixels."""
                spent = 0.0
                for s in range(0, len(images), bs):
                    x = pre(torch.from_numpy(images[s : s + bs]))
                    t0 = time.perf_counter()
                    bb.embed_raw(x)
                    bb.embed_raw(x.flip(-1))
                    spent += time.perf_counter() - t0
                return spent

            with torch.inference_mode():
                bb.embed_raw(pre(torch.from_numpy(images[:8])))
                before = pure_forward()
                t0 = time.perf_counter()
                res = evaluate_model(model, {"pairs": str(path)}, cfg)
                total = time.perf_counter() - t0
                forward = min(before, pure_forward())  # best of two: the machine is shared and noisy
            results[name] = {
                "pairs": pairs,
                "evaluate_seconds": round(total, 2),
                "pure_forward_seconds": round(forward, 2),
                "evaluate_over_forward": round(total / forward, 3),
                "accuracy": round(res[0].accuracy, 4),
            }
            print(name, results[name], flush=True)
    save(f"evaluate_throughput_{pairs}", results)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 6000
    main(n, sys.argv[2].split(",") if len(sys.argv) > 2 else ["tiny", "r18"])
