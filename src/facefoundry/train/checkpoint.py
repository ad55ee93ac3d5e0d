"""Reading a resumable job's checkpoint: weights and plain values only, never arbitrary pickles.

A checkpoint that cannot be read (truncated by a full disk, damaged, or holding objects a
weights-only load refuses) is moved aside — not deleted — and the job starts afresh.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def read_checkpoint(
    path: str | Path, map_location: str | torch.device, log: Callable[[str], None]
) -> dict[str, Any] | None:
    """The checkpoint's dict, or None when there is none or it is unreadable (then kept as ``<name>.unreadable``)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol notes name its unsafe switch: not for users
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(state, dict):
            raise ValueError("not a dict")
        return state
    except Exception as exc:  # a damaged checkpoint must not stop a fresh start
        aside = path.with_name(path.name + ".unreadable")
        try:
            os.replace(path, aside)
            where = f"moved to {aside}"
        except OSError:
            where = "left in place"
        log(f"{path}: unreadable checkpoint ({exc.__class__.__name__}); {where}; starting afresh")
        return None
