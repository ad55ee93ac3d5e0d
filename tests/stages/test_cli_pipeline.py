"""The CLI end to end on a tiny config: real subprocesses, a real MLflow SQLite store, real DVC."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from facefoundry.data.hashing import dvc_dir_hash
from tests.conftest import make_dataset, tiny_config

pytestmark = pytest.mark.e2e

ENV = {**os.environ, "MLFLOW_TRACKING_URI": "", "GIT_PYTHON_REFRESH": "quiet"}
ENV.pop("MLFLOW_TRACKING_URI")


def ff(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facefoundry", "--params", str(tmp / "params.yaml"), *args],
        cwd=tmp,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipe")
    tiny_config(
        tmp,
        generate={"identities": 12, "images_per_identity": 6},  # the pipeline's layout for one recipe
        train={"epochs": 4, "batch_size": 16, "export_onnx": True, "metrics": str(tmp / "metrics/render/train.json")},
        evaluate={"out": str(tmp / "metrics/render/eval")},
        benchmark={"pairs": 60},
        report={"include_adhoc": True},
    )  # plain CLI calls are ad hoc: ranked only when asked
    for stage in ("generate", "benchmark", "validate", "train", "evaluate", "report"):
        proc = ff(tmp, stage)
        assert proc.returncode == 0, f"{stage}: {proc.stderr[-2000:]}"
    return tmp


def test_pipeline_tracks_every_stage(pipeline):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{pipeline}/mlflow.db")
    exp = client.get_experiment_by_name("tests")
    runs = client.search_runs([exp.experiment_id])
    stages = {r.data.tags["facefoundry.stage"] for r in runs}
    assert stages == {"generate", "benchmark", "validate", "train", "evaluate", "report"}
    train = next(r for r in runs if r.data.tags["facefoundry.stage"] == "train")
    m = train.data.metrics
    assert 0.0 <= m["twins/accuracy"] <= 1.0 and "twins/auc" in m and "train/loss" in m
    assert train.data.params["train.backbone.name"] == "iresnet"
    assert train.data.tags["dataset.dvc_md5"] == dvc_dir_hash(pipeline / "render")
    arts = {a.path for a in client.list_artifacts(train.info.run_id, "samples")}
    assert "samples/train_grid.png" in arts
    models = client.search_logged_models(experiment_ids=[exp.experiment_id])
    assert [m for m in models if m.source_run_id == train.info.run_id]  # the trained model, in this store
    evaluate = next(r for r in runs if r.data.tags["facefoundry.stage"] == "evaluate")
    assert {a.path for a in client.list_artifacts(evaluate.info.run_id, "plots")} >= {
        "plots/roc.png",
        "plots/hist_twins.png",
    }
    metrics = json.loads((pipeline / "metrics/render/eval/metrics.json").read_text())
    assert metrics["twins_accuracy"] == pytest.approx(m["twins/accuracy"])
    assert (pipeline / "metrics/render/validate.json").is_file()  # validate of a recipe writes where dvc.yaml does
    board = (pipeline / "report" / "leaderboard.md").read_text()
    assert "Ranked on twins accuracy" in board and board.count("\n| 1 | render | 1 |") == 1
    assert {"leaderboard.md", "leaderboard.png", "leaderboard.json", "roc_twins.png"} <= {
        p.name for p in (pipeline / "report").iterdir()
    }
    assert (pipeline / "train" / "model" / "backbone.onnx").is_file()
    # every stage's products folder: what the MLflow run shows, as files
    for folder, names in {
        "outputs/samples/render": {"samples/grid.png"},
        "outputs/samples/twins": {"samples/pairs.png"},
        "outputs/validate/render": {"gates.json", "problems.json", "samples/grid.png"},
        "train/plots": {"plots/training.png", "samples/train_grid.png"},
        "outputs/eval/train": {"plots/hist_twins.png", "results.md"},
    }.items():
        have = {p.relative_to(pipeline / folder).as_posix() for p in (pipeline / folder).rglob("*") if p.is_file()}
        assert names <= have, (folder, have)


def test_missing_benchmark_path(pipeline):
    import sqlite3

    def failed() -> int:
        with sqlite3.connect(pipeline / "mlflow.db") as db:
            return db.execute("SELECT COUNT(*) FROM runs WHERE status = 'FAILED'").fetchone()[0]

    before = failed()
    proc = ff(pipeline, "--set", "evaluate.benchmarks.lfw=/nonexistent/lfw.bin", "evaluate")
    assert_one_line_error(proc, "evaluate.benchmarks.lfw: /nonexistent/lfw.bin", "does not exist")
    assert failed() == before  # checked before the run opens: no FAILED run left behind


def test_unknown_backbone_and_bad_config(tmp_path):
    tiny_config(tmp_path, train={"dataset": str(make_dataset(tmp_path / "ds", 4, 4))})
    assert_one_line_error(ff(tmp_path, "--set", "train.backbone.name=r999", "train"), "unknown backbone 'r999'", "r50")
    assert_one_line_error(ff(tmp_path, "--set", "train.epochs=-1", "train"), "train.epochs")
    assert_one_line_error(
        ff(tmp_path, "--set", "generate.render.yaw=[10, -10]", "generate"),
        "generate.render.yaw: range min 10.0 is greater than max -10.0",
    )


def test_corrupt_image_stops_training_with_its_name(tmp_path):
    ds = make_dataset(tmp_path / "ds", 4, 4)
    victim = sorted((ds / "images").rglob("*.png"))[3]
    victim.write_bytes(b"\x89PNG broken")
    tiny_config(tmp_path, train={"dataset": str(ds)})
    assert_one_line_error(ff(tmp_path, "train"), victim.name, "sha256 differs from the manifest")
    # without the pre-check, decoding still stops at the broken file and names it
    assert_one_line_error(ff(tmp_path, "--set", "train.verify_data=false", "train"), victim.name, "cannot decode image")
    assert not (tmp_path / "train" / "model").exists()


def test_dvc_dir_hash_equals_dvc(tmp_path):
    ds = make_dataset(tmp_path / "ds", 2, 2)
    dvc = Path(sys.executable).parent / "dvc"
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([str(dvc), "init", "-q"], cwd=tmp_path, check=True, env=ENV)
    subprocess.run([str(dvc), "add", "-q", "ds"], cwd=tmp_path, check=True, env=ENV)
    import yaml

    recorded = yaml.safe_load((tmp_path / "ds.dvc").read_text())["outs"][0]["md5"]
    assert dvc_dir_hash(ds) == recorded


def test_unknown_generator_lists_choices(tmp_path):
    tiny_config(tmp_path)
    assert_one_line_error(
        ff(tmp_path, "generate", "--generator", "stylegan9"), "unknown generator 'stylegan9'", "render"
    )
    assert not (tmp_path / "render").exists()


def test_every_benchmark_is_checked_before_any_is_scored(pipeline):
    bad = pipeline / "bad.bin"
    bad.write_bytes(b"not a pickle")
    proc = ff(pipeline, "--set", f"evaluate.benchmarks.second={bad}", "evaluate")
    assert_one_line_error(proc, str(bad), "not an insightface .bin")
    assert "model on twins" not in proc.stderr  # no embedding was spent on the first benchmark


def test_benchmark_of_another_size_is_resized_or_refused(pipeline):
    from facefoundry.data.transforms import resize_uint8
    from facefoundry.verification.binfile import read_bin, write_bin

    pairs = read_bin(pipeline / "twins.bin")
    big = pipeline / "twins64.bin"
    write_bin(big, resize_uint8(pairs.images, 64), pairs.issame)
    out = pipeline / "eval64"
    proc = ff(pipeline, "--set", f"evaluate.benchmarks={{big: {big}}}", "--set", f"evaluate.out={out}", "evaluate")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warning: resizing 64-px benchmark crops to the model's 32 px" in proc.stderr
    assert 0 <= json.loads((out / "metrics.json").read_text())["big_accuracy"] <= 1
    refused = ff(pipeline, "--set", f"evaluate.benchmarks={{big: {big}}}", "--set", "evaluate.resize=false", "evaluate")
    assert_one_line_error(refused, str(big), "images are 64x64, the model expects 32x32")
