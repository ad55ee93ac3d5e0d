"""Checkpoints load as weights and plain values only; a damaged one is kept aside, never silently lost."""

from __future__ import annotations

import os
import pickle

import torch

from facefoundry.train.checkpoint import read_checkpoint


def test_good_checkpoint_loads_weights_only(tmp_path):
    path = tmp_path / "checkpoint.pt"
    opt = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters())
    torch.save({"epoch": 3, "opt": opt.state_dict(), "history": [{"loss": 1.0}]}, path)
    state = read_checkpoint(path, "cpu", print)
    assert state["epoch"] == 3 and state["history"] == [{"loss": 1.0}]
    assert read_checkpoint(tmp_path / "none.pt", "cpu", print) is None


def test_damaged_or_unsafe_checkpoints_are_moved_aside(tmp_path):
    logs: list[str] = []
    for i, data in enumerate([b"PK\x03\x04 truncated", pickle.dumps({"epoch": os.system})]):
        path = tmp_path / f"c{i}.pt"
        path.write_bytes(data)
        assert read_checkpoint(path, "cpu", logs.append) is None
        assert not path.exists() and path.with_name(path.name + ".unreadable").read_bytes() == data
    assert all("unreadable checkpoint" in m and "starting afresh" in m and "weights_only" not in m for m in logs)
