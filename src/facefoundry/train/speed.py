"""``train.compile``: ``torch.compile`` of the backbone, which changes how fast a step runs, not what it learns
(up to float noise: fused kernels sum in another order).

The backbone is compiled in place (:meth:`torch.nn.Module.compile`): it stays the same module, so the state dict,
the checkpoint, resuming and the saved model keep their keys (none of the ``_orig_mod.`` prefix a
``torch.compile`` wrapper adds), and DDP wraps the network as before. :func:`uncompile` gives back the eager module
before export (ONNX's tracer, MLflow's pickle and evaluation take it as it was). The first step pays the
compilation (tens of seconds on a CPU: TorchInductor writes and builds C++), every later step runs the compiled one.

The other two switches of the step live in the trainer: ``train.channels_last`` (one ``memory_format`` for weights
and batches) and ``train.amp`` (:func:`facefoundry.device.amp_dtype`: bf16 autocast on a CPU with native bf16,
fp16 with a GradScaler on CUDA).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from facefoundry.errors import FaceFoundryError

BACKEND: str | Callable[..., Any] = "inductor"  # torch.compile's default; tests swap in a cheaper one


def check_compile(device: torch.device) -> None:
    """Raise a one-line error where ``torch.compile`` cannot run on ``device`` (before any step, not in the first)."""
    if not torch._dynamo.is_dynamo_supported():
        raise FaceFoundryError(
            f"train.compile: torch.compile does not run on this Python or platform (torch {torch.__version__}); "
            "set train.compile=false"
        )
    if BACKEND != "inductor":
        return
    if device.type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
        except Exception as exc:  # torch's own error type moves between releases
            raise FaceFoundryError(
                f"train.compile: TorchInductor needs a C++ compiler for the CPU and found none "
                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); install g++ (or set CXX) "
                "or set train.compile=false"
            ) from None
    elif device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise FaceFoundryError(
                "train.compile: TorchInductor needs Triton on CUDA and it is not installed; "
                "install triton or set train.compile=false"
            )


def compile_backbone(backbone: nn.Module, enabled: bool, device: torch.device) -> None:
    """``train.compile``: compile ``backbone``'s calls in place (its parameters, names and hooks unchanged)."""
    if enabled:
        check_compile(device)
        backbone.compile(backend=BACKEND)


def is_compiled(module: nn.Module) -> bool:
    return getattr(module, "_compiled_call_impl", None) is not None


def uncompile(module: nn.Module) -> None:
    """The eager module again (what :meth:`torch.nn.Module.compile` set aside); nothing where it was not compiled."""
    if is_compiled(module):
        module._compiled_call_impl = None
