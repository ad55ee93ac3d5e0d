"""dlib face-recognition ResNet: the torch port against dlib-bin's own, images/s at batch 64.

    python benchmarks/encoder_throughput.py [N]

Both embed the same N 150-px chips of random pixels (speed does not depend on content) in
batches of 64 on the CPU threads torch and dlib are given (this machine: 2 cores). "port, template crop" adds the differentiable warp
from a 112-px template-aligned crop, i.e. what the platform's ``embed`` costs end to end.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import save
from facefoundry.identity.encoders import DlibEncoder

BATCH = 64


def rate(fn, n: int, repeats: int = 3) -> float:
    fn(0)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for s in range(0, n, BATCH):
            fn(s)
        best = min(best, time.perf_counter() - t0)
    return n / best


def main(n: int = 256) -> None:
    import dlib
    import face_recognition_models as frm

    rng = np.random.default_rng(0)
    chips = rng.integers(0, 256, (n, 150, 150, 3), dtype=np.uint8)
    crops = rng.integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)
    enc = DlibEncoder.load()
    rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    chips_t = torch.from_numpy(chips).permute(0, 3, 1, 2).float()
    crops_t = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255

    def port(s: int) -> None:
        with torch.inference_mode():
            enc.descriptor(chips_t[s : s + BATCH])

    def port_template(s: int) -> None:
        with torch.inference_mode():
            enc(crops_t[s : s + BATCH])

    def dlib_bin(s: int) -> None:
        rec.compute_face_descriptor(list(chips[s : s + BATCH]))

    result = {
        "images": n,
        "batch": BATCH,
        "torch_threads": torch.get_num_threads(),
        "dlib_bin_img_per_s": rate(dlib_bin, n),
        "port_img_per_s": rate(port, n),
        "port_template_crop_img_per_s": rate(port_template, n),
    }
    result["port_over_dlib_bin"] = result["port_img_per_s"] / result["dlib_bin_img_per_s"]
    save("encoder_throughput", result)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 256)
