"""A generator from another distribution plugs in through the `facefoundry.generators` entry point, with no edit
to FaceFoundry: the toy of tests/plugins/toygen is installed (into a folder of its own, as pip would into any
environment) and goes through generate → validate → train → evaluate, a sweep and promote, with its card."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_config

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_ADDRESS"))}
ENV["GIT_PYTHON_REFRESH"] = "quiet"


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> tuple[Path, dict]:
    """(a folder with tiny params whose generator is the plug-in, the environment that has it installed)."""
    tmp = tmp_path_factory.mktemp("plugin")
    source = tmp / "toygen"
    shutil.copytree(ROOT / "tests" / "plugins" / "toygen", source)  # pip builds in place: never in the checkout
    site = tmp / "site"
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [ENV.get("PYTHONPATH")])])}
    tiny_config(
        tmp,
        generate={"generator": "toy", "out": str(tmp / "toy"), "identities": 10, "images_per_identity": 6},
        datasets={"toy": str(tmp / "toy")},
        identity={"judge_max_images": 40},
        train={
            "dataset": str(tmp / "toy"),
            "epochs": 3,
            "export_onnx": False,
            "metrics": str(tmp / "metrics/toy/train.json"),
        },
        evaluate={"out": str(tmp / "metrics/toy/eval")},
        benchmark={"pairs": 40},
        report={"include_adhoc": True},
        promote={"out": str(tmp / "promoted.yaml"), "card": str(tmp / "promoted_card.md")},
    )
    return tmp, env


def ff(tmp: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "facefoundry", "--params", str(tmp / "params.yaml"), *args],
        cwd=tmp,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, f"{args}: {proc.stderr[-3000:]}"
    return proc


def test_a_plugin_generator_goes_through_the_pipeline_a_sweep_and_promotion(plugin):
    tmp, env = plugin
    noise = ["--set", "generate.toy.noise=10"]  # the plug-in's own settings: generate.toy
    for stage in (["generate"], ["benchmark"], ["validate"], ["train"], ["evaluate"], ["report"]):
        ff(tmp, env, *noise, *stage)
    from facefoundry.data.manifest import read_manifest

    meta = read_manifest(tmp / "toy").meta
    assert meta["generator"] == "toy" and meta["toy"] == {"noise": 10.0} and meta["num_classes"] == 10
    assert json.loads((tmp / "metrics/toy/validate.json").read_text())["identities"] == 10
    assert 0 <= json.loads((tmp / "metrics/toy/eval/metrics.json").read_text())["twins_accuracy"] <= 1
    assert "| 1 | toy | 1 |" in (tmp / "report" / "leaderboard.md").read_text()

    (tmp / "sweep.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "toy_sweep",
                "params": str(tmp / "params.yaml"),
                "seed": 1,
                "space": {
                    "generate.toy.noise": {"type": "grid", "values": [8.0, 16.0]}
                },  # a plug-in setting as a dimension
                "budget": {"trials": 2, "max_concurrent": 1},
                "asha": {"enabled": False},
            }
        )
    )
    ff(tmp, env, "sweep", str(tmp / "sweep.yaml"), "--out", str(tmp / "sweep"))
    results = json.loads((tmp / "sweep" / "results.json").read_text())
    assert results["counts"]["completed"] == 2, results
    made = [json.loads(line) for line in (tmp / "sweep" / "datasets" / "generations.jsonl").read_text().splitlines()]
    assert [m["kind"] for m in made] == ["generate", "generate"]  # one toy dataset per noise level
    from facefoundry.data.manifest import read_manifest as manifest_of

    noises = {
        manifest_of(p.parent).meta["toy"]["noise"] for p in (tmp / "sweep" / "datasets").glob("*/manifest.parquet")
    }
    assert noises == {8.0, 16.0}

    ff(tmp, env, "promote", "--include-adhoc", "--force")  # one seed per recipe: evidence is not the point here
    card = (tmp / "promoted_card.md").read_text()
    assert "**toy** — toy colour-layout faces (a test plug-in)" in card and "| toy.noise |" in card
    assert "None: no real photo was used" in card  # it learns nothing
    assert "generator: toy" in (tmp / "promoted.yaml").read_text()


def test_a_generator_name_nobody_announces_is_one_line(plugin):
    tmp, _ = plugin
    env = {**ENV}  # without the plug-in installed
    proc = subprocess.run(
        [sys.executable, "-m", "facefoundry", "--params", str(tmp / "params.yaml"), "generate"],
        cwd=tmp,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown generator 'toy'; choose one of: idsync, realism, render, vec2face" in proc.stderr
