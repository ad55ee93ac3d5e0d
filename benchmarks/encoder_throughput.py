"""Identity encoders, images/s: dlib's ResNet (the torch port against dlib-bin's own, batch 64) and SFace (the
torch port, batch 64, against onnxruntime on the rewired wheel graph, whose batch is fixed at 1).

    python benchmarks/encoder_throughput.py [N]

Both embed the same N 150-px chips of random pixels (speed does not depend on content) in
batches of 64 on the CPU threads torch and dlib are given (this machine: 2 cores). "port, template crop" adds the differentiable warp
from a 112-px template-aligned crop, i.e. what the platform's ``embed`` costs end to end. SFace embeds 112-px
template crops natively (no warp): its port in batches of 64, and onnxruntime one image at a time.
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
    result.update(sface(crops))
    save("encoder_throughput", result)


def sface(crops: np.ndarray) -> dict:
    """SFace's torch port (batch 64, template crops in [0, 1]) and onnxruntime on the rewired graph (batch 1)."""
    from facefoundry.identity.onnx_session import cpu_session
    from facefoundry.identity.sface import SFaceEncoder, default_model_path, rewired_onnx

    enc = SFaceEncoder.load()
    crops_t = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
    session = cpu_session(rewired_onnx(default_model_path()).SerializeToString(), torch.get_num_threads())
    name = session.get_inputs()[0].name
    pixels = crops.transpose(0, 3, 1, 2).astype(np.float32)

    def port(s: int) -> None:
        with torch.inference_mode():
            enc(crops_t[s : s + BATCH])

    def ort(s: int) -> None:
        for i in range(s, min(s + BATCH, len(pixels))):
            session.run(None, {name: pixels[i : i + 1]})

    out = {"sface_port_img_per_s": rate(port, len(crops)), "sface_onnxruntime_batch1_img_per_s": rate(ort, len(crops))}
    out["sface_port_over_onnxruntime"] = out["sface_port_img_per_s"] / out["sface_onnxruntime_batch1_img_per_s"]
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 256)
