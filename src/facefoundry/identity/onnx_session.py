"""One way to open an ONNX graph with onnxruntime on the CPU, for every back-end that runs one (YuNet, ONNX
recognition models): the thread count, the provider, and a failure as one line naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facefoundry.errors import FaceFoundryError


def cpu_session(model: str | Path | bytes, threads: int = 0, name: str | Path = "", what: str = "the model") -> Any:
    """An ``onnxruntime.InferenceSession`` of ``model`` (a path, or a serialised graph named ``name``) on the CPU
    provider; ``threads`` 0: onnxruntime's default. A graph onnxruntime refuses is a FaceFoundryError."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error types
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
        label = name or (model if not isinstance(model, bytes) else "ONNX graph")
        raise FaceFoundryError(f"{label}: onnxruntime cannot run {what} ({first})") from None
