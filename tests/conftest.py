"""Shared fixtures: tiny configs and datasets the tests make themselves."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from facefoundry.config import Config, load_config
from facefoundry.data.writer import DatasetWriter

# the once-per-dataset verification cache: per test session, never the user's ~/.cache
if "FACEFOUNDRY_CACHE" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="facefoundry-test-cache-")
    os.environ["FACEFOUNDRY_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)  # one per session, not one left per run

TINY = {
    "base": {"image_size": 32, "seed": 7},
    "generate": {
        "identities": 6,
        "images_per_identity": 4,
        "batch_size": 32,
        "render": {"mesh_lat": 20, "mesh_lon": 28, "supersample": 1},
    },
    "benchmark": {"pairs": 40},
    "realism": {
        "train_steps": 4,
        "batch_size": 2,
        "gen_width": 8,
        "gen_blocks": 1,
        "unet_width": 8,
        "ddim_steps": 4,
        "target_images": 8,
    },
    "train": {
        "backbone": {"name": "iresnet", "layers": [1, 1, 1, 1], "width": 8, "embedding_size": 32},
        "head": {"name": "arcface", "s": 16.0},
        "epochs": 2,
        "batch_size": 16,
        "lr": 0.05,
        "warmup_epochs": 0,
        "log_every": 1000,
        "export_onnx": False,
    },
    "evaluate": {"batch_size": 64},
}


def tiny_config(tmp: Path, **sections: dict) -> Config:
    """A Config for tests: tiny sizes, all paths and the MLflow store inside ``tmp``."""
    import yaml

    from facefoundry.config import deep_merge

    raw = deep_merge(
        TINY,
        {
            "base": {"tracking_uri": f"sqlite:///{tmp}/mlflow.db", "experiment": "tests"},
            "generate": {"out": str(tmp / "render")},
            "benchmark": {"out": str(tmp / "twins.bin")},
            "realism": {
                "source": str(tmp / "render"),
                "target_dir": str(tmp / "target"),
                "out": str(tmp / "real"),
                "model_out": str(tmp / "realism_model"),
            },
            "datasets": {"render": str(tmp / "render")},
            "train": {"dataset": str(tmp / "render"), "out": str(tmp / "train")},
            "evaluate": {
                "model": str(tmp / "train" / "model"),
                "benchmarks": {"twins": str(tmp / "twins.bin")},
                "out": str(tmp / "eval"),
            },
            "report": {
                "out": str(tmp / "report"),
                "metrics": str(tmp / "metrics"),
                "leaderboard_out": str(tmp / "leaderboard"),
            },
        },
    )
    raw = deep_merge(raw, sections)
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def identity_image(label: int, k: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """An easy synthetic 'face': an identity-specific colour layout plus per-image noise and shift."""
    base = np.random.default_rng(1000 + label)
    colours = base.uniform(30, 225, (2, 2, 3))
    img = np.kron(colours, np.ones((size // 2, size // 2, 1)))
    img = np.roll(img, int(rng.integers(-2, 3)), axis=1)
    img = img + rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_dataset(
    path: Path, identities: int = 8, per_identity: int = 6, size: int = 32, seed: int = 0, fmt: str = "png"
) -> Path:
    rng = np.random.default_rng(seed)
    with DatasetWriter(path, {"generator": "test", "num_classes": identities, "image_size": size}, fmt) as w:
        for label in range(identities):
            for k in range(per_identity):
                w.add(identity_image(label, k, size, rng), label, f"id_{label:03d}", "test", {"k": k})
    return path


def make_soft_dataset(path: Path, identities: int = 6, per_identity: int = 6, size: int = 32, seed: int = 0) -> Path:
    """A dataset whose odd images carry a SynFace soft label: partner (label + 1) mod N, weight 0.75."""
    rng = np.random.default_rng(seed)
    with DatasetWriter(path, {"generator": "test", "num_classes": identities, "image_size": size}) as w:
        for label in range(identities):
            for k in range(per_identity):
                mix = ((label + 1) % identities, 0.75) if k % 2 else (-1, 1.0)
                w.add(identity_image(label, k, size, rng), label, f"id_{label:03d}", "test", {"k": k}, *mix)
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Config:
    return tiny_config(tmp_path)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "ds")


# -- running the suite on several workers (infra/test.sh: pytest -n 2) ----------------------------------------------
# Every module's tests stay on one worker, so a module fixture (a reproduced repository, a trained model) is made
# once. Everything that starts Ray is one scope: `ray stop --force` in one module's teardown would stop another's
# Ray. The modules that start PostgreSQL, S3 and MLflow servers without Ray are another, beside it (their servers
# take free ports). (pytest-xdist's own `--dist loadgroup` cannot do this under pytest 9: it regroups by rewriting
# `item._nodeid`, which pytest 9 no longer reads; a scheduler that splits node ids into these scopes can.)
RAY_SCOPE, SERVERS_SCOPE = "ray", "servers"
# (test_plugin_generator runs a local Ray sweep, which a cluster test's `ray stop --force` would kill)
_SCOPES = (
    ("tests/infra/test_ray_cluster.py", RAY_SCOPE),
    ("tests/infra/", SERVERS_SCOPE),
    ("tests/sweep/test_cluster.py", RAY_SCOPE),
    ("tests/sweep/test_sweep_run.py", RAY_SCOPE),
    ("tests/test_plugin_generator.py", RAY_SCOPE),
    ("tests/sweep/test_ray_train.py", RAY_SCOPE),  # a head node of its own, which another's `ray stop --force` kills
)


# The longest scopes are handed out first (longest-processing-time-first), so no worker is left running one of them
# alone at the end: the Ray scope (≈ 6–7 min on 2 cores), the fresh-clone `dvc repro` module (≈ 5 min), two short
# modules (a worker starts with two scopes), then the servers scope (≈ 3 min); the rest in collection order.
_LONGEST = (RAY_SCOPE, "tests/stages/test_dvc_experiments.py")
_SERVERS_AFTER = 2  # short scopes ahead of the servers scope


def pytest_collection_modifyitems(config, items):
    """Order the collection so that pytest-xdist hands the longest scopes out first (``ModuleScopes``)."""
    scopes = list(dict.fromkeys(scheduling_scope(i.nodeid) for i in items))
    rest = [s for s in scopes if s not in _LONGEST and s != SERVERS_SCOPE]
    order = [s for s in _LONGEST if s in scopes] + rest[:_SERVERS_AFTER]
    order += [SERVERS_SCOPE] if SERVERS_SCOPE in scopes else []
    rank = {s: n for n, s in enumerate(order + rest[_SERVERS_AFTER:])}
    items.sort(key=lambda i: rank[scheduling_scope(i.nodeid)])  # stable: each scope keeps its own order


def scheduling_scope(nodeid: str) -> str:
    """The scheduling scope of a test: its module, or ``ray`` / ``servers`` for the modules that start Ray / servers."""
    path = nodeid.split("::", 1)[0]
    return next((scope for prefix, scope in _SCOPES if path.startswith(prefix)), path)


if importlib.util.find_spec("xdist") is not None:

    def pytest_xdist_make_scheduler(config, log):  # pytest-xdist's hook signature
        from xdist.scheduler import LoadScopeScheduling

        class ModuleScopes(LoadScopeScheduling):
            def __init__(self, config, log=None):
                super().__init__(config, log)
                config.option.loadscopereorder = False  # the collection's order (above), not the test counts'

            def _split_scope(self, nodeid: str) -> str:
                return scheduling_scope(nodeid)

        return ModuleScopes(config, log)
