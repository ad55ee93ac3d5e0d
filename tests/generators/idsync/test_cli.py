"""`facefoundry generate --generator idsync` trains the model first when it is missing, then generates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from facefoundry.data.manifest import read_manifest
from facefoundry.generators.idsync.model import MODEL_INDEX
from tests.conftest import make_dataset, tiny_config
from tests.generators.idsync import TINY_IDSYNC

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]


def test_generate_trains_then_generates_and_logs_both_runs(tmp_path: Path) -> None:
    make_dataset(tmp_path / "photos", identities=4, per_identity=4, size=16)
    tiny_config(
        tmp_path,
        identity={"judges": []},
        idsync={
            **TINY_IDSYNC,
            "dataset": "photos",
            "epochs": 1,
            "identity_weight": 0.0,
            "out": "ids",
            "threads": 1,
            "text_width": 128,
        },
        generate={
            "identities": 3,
            "images_per_identity": 2,
            "batch_size": 4,
            "idsync": {"model": "ids/model", "steps": 2, "judge_images": 0},
        },
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-m", "facefoundry", "--params", "params.yaml", "generate", "--generator", "idsync"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no idsync model yet; training it first" in proc.stderr + proc.stdout
    assert (tmp_path / "ids" / "model" / MODEL_INDEX).is_file()
    m = read_manifest(tmp_path / "idsync")  # another generator than generate.generator: a sibling of generate.out
    assert len(m) == 6 and m.meta["generator"] == "idsync"
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert {r.data.tags["facefoundry.stage"] for r in runs} == {"train-idsync", "generate"}
