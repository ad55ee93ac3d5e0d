"""The committed dvc.lock matches the committed code, so a fresh clone's `dvc repro` leaves git clean.

After changing code a stage depends on, run `dvc repro` and commit dvc.lock (and metrics/).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from facefoundry.data.hashing import dvc_dir_hash

ROOT = Path(__file__).resolve().parents[1]


def stage_names() -> set[str]:
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    names = set()
    for name, stage in spec.items():
        if "foreach" in stage:
            key = stage["foreach"].strip("${}")
            names |= {f"{name}@{k}" for k in params[key]}
        else:
            names.add(name)
    return names


def test_lock_names_exactly_the_pipeline_stages():
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    assert set(lock) == stage_names()


def test_lock_records_the_committed_code():
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    stale = [
        f"{name}: {d['path']}"
        for name, stage in lock.items()
        for d in stage.get("deps", [])
        if d["path"].startswith("src/") and dvc_dir_hash(ROOT / d["path"], ("__pycache__",)) != d["md5"]
    ]
    assert not stale, f"dvc.lock is stale for {stale}: run `dvc repro` and commit dvc.lock and metrics/"
