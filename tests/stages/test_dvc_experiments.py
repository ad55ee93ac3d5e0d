"""The repository's own dvc.yaml, driven by real `dvc` and `git` in a temp repo on tiny params:
reproducible dvc.lock and metrics, comparable experiments, grouped MLflow runs, the registry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from facefoundry.config import deep_merge

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "FACEFOUNDRY_"))}
ENV.update(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", GIT_PYTHON_REFRESH="quiet",
           GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")

TINY = {
    "base": {"image_size": 32, "seed": 7, "experiment": "dvc-tests"},
    "generate": {"identities": 6, "images_per_identity": 4, "batch_size": 32,
                 "render": {"mesh_lat": 20, "mesh_lon": 28, "supersample": 1},
                 "vec2face": {"attrop": {"enabled": False}, "judge_images": 0, "grid_identities": 2}},
    "benchmark": {"pairs": 40},
    "vec2face": {"image_size": 32, "patch": 8, "width": 32, "depth": 1, "heads": 2, "decoder_depth": 1,
                 "decoder_heads": 2, "decoder_channels": 8, "decoder_multipliers": [1, 1, 2, 2], "z_channels": 16,
                 "disc_dims": [8, 16, 32], "batch_size": 8, "epochs": 1, "warmup_epochs": 0, "threads": 1},
    "identity": {"judge_max_images": 16},
    "train": {"backbone": {"name": "iresnet", "layers": [1, 1, 1, 1], "width": 8, "embedding_size": 32},
              "head": {"name": "arcface", "s": 16.0}, "epochs": 2, "batch_size": 8, "lr": 0.05,
              "warmup_epochs": 0, "log_every": 1000, "export_onnx": True, "threads": 1},
    "evaluate": {"batch_size": 64, "far_targets": [0.1]},
    "fuse": {"identities": 6},
}


def run(cwd: Path, *cmd: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, env=ENV, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} → {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def dvc(cwd: Path, *args: str, **kw) -> subprocess.CompletedProcess:  # noqa: ANN003
    return run(cwd, sys.executable, "-m", "dvc", *args, **kw)


def make_repo(dst: Path) -> Path:
    """The repository's tracked files (as in the working tree) + tiny params, committed."""
    files = run(ROOT, "git", "ls-files", "-co", "--exclude-standard").stdout.split()
    for rel in files:
        src = ROOT / rel
        if src.is_file() and not rel.startswith(("tests/", "benchmarks/", "metrics/")) and rel != "dvc.lock":
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    vec = {"vec2face": {"model": "outputs/vec2face/model"}}
    (dst / "params.yaml").write_text(yaml.safe_dump(deep_merge(params, deep_merge(TINY, {"generate": vec}))))
    run(dst, "git", "init", "-q")
    run(dst, "git", "add", "-A")
    run(dst, "git", "commit", "-qm", "tiny")
    return dst


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    r = make_repo(tmp_path_factory.mktemp("dvcrepo"))
    dvc(r, "repro")
    run(r, "git", "add", "-A")
    run(r, "git", "commit", "-qm", "repro")
    return r


def test_repro_writes_git_tracked_metrics_and_is_reproducible(repo):
    # metrics live where git tracks them; no run id or timing in any DVC metrics file
    for recipe in ("render", "vec2face"):
        m = json.loads((repo / f"metrics/{recipe}/eval/metrics.json").read_text())
        assert 0 <= m["twins_accuracy"] <= 1
        train = json.loads((repo / f"metrics/{recipe}/train.json").read_text())
        assert set(train) == {"epochs", "loss", "train_accuracy"}
        assert (repo / f"metrics/{recipe}/eval/roc.png").read_bytes()[:4] == b"\x89PNG"
    assert "mlflow_run_id" not in (repo / "outputs/train/render/model/facefoundry_model.json").read_text()
    # from scratch again (no outputs, no cache use): the same dvc.lock and metrics, git stays clean
    lock = (repo / "dvc.lock").read_text()
    shutil.rmtree(repo / "outputs")
    dvc(repo, "repro", "--force")
    status = run(repo, "git", "status", "--porcelain").stdout
    assert status == "", f"a fresh repro changed tracked files:\n{status}\n" + run(repo, "git", "diff").stdout[:3000]
    assert (repo / "dvc.lock").read_text() == lock


def test_experiments_compare_in_dvc(repo):
    dvc(repo, "exp", "run", "-S", "train.lr=0.02", "-n", "lr-low")
    dvc(repo, "exp", "run", "-S", "train.lr=0.2", "-n", "lr-high")
    show = json.loads(dvc(repo, "exp", "show", "--json").stdout)
    found = {}
    for baseline in show:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs", []):
                data = rev.get("data") or {}
                metrics = data.get("metrics") or {}
                acc = metrics.get("metrics/render/eval/metrics.json", {}).get("data", {}).get("twins_accuracy")
                if rev.get("name"):
                    found[rev["name"]] = acc
    assert {"lr-low", "lr-high"} <= set(found), found
    assert all(isinstance(found[n], float) for n in ("lr-low", "lr-high")), found
    diff = json.loads(dvc(repo, "metrics", "diff", "lr-low", "lr-high", "--json").stdout)
    assert "metrics/render/eval/metrics.json" in diff, diff
    plots = dvc(repo, "plots", "diff", "lr-low", "lr-high", "--json")
    assert "roc_twins.json" in plots.stdout


def test_mlflow_groups_each_pipeline_execution(repo):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{repo}/mlflow.db")
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("dvc-tests")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = {r.info.run_id: r for r in runs if r.data.tags.get("facefoundry.role") == "pipeline"}
    children = [r for r in runs if r.info.run_id not in parents]
    assert parents  # one per repro / experiment
    assert all(r.data.tags.get("mlflow.parentRunId") in parents for r in children)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    by_parent: dict[str, list] = {}
    for r in children:
        by_parent.setdefault(r.data.tags["mlflow.parentRunId"], []).append(r)
    first = min(parents.values(), key=lambda r: r.info.start_time)
    stages = sorted(r.data.tags["facefoundry.stage"] for r in by_parent[first.info.run_id])
    assert stages.count("train") == 3 and stages.count("evaluate") == 3 and "report" in stages  # render, vec2face, fused
    assert stages.count("fuse") == 1
    train = next(r for r in by_parent[first.info.run_id] if r.data.tags["facefoundry.stage"] == "train")
    assert train.info.run_name.startswith("train · ")
    assert train.data.params["data.generator"] in ("render", "vec2face", "fusion")
    assert "twins/accuracy" in train.data.metrics
    inputs = train.inputs.dataset_inputs
    assert inputs and inputs[0].dataset.digest and inputs[0].dataset.name in ("render", "vec2face", "fused")
    # the registry: one version per training run, an alias per recipe, accuracies attached
    mv = client.get_model_version_by_alias("facefoundry-fr", "render")
    assert "twins/accuracy" in mv.tags and mv.tags["recipe"] == "render"
    arts = {a.path for a in client.list_artifacts(train.info.run_id)}
    logged = mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list")
    assert any(m.name == "model_onnx" for m in logged), (arts, [m.name for m in logged])


def test_mlflow_project_main_is_dvc_repro(repo, tmp_path):
    other = make_repo(tmp_path / "mlproject")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{other}/mlflow.db", "MLFLOW_EXPERIMENT_NAME": "dvc-tests"}
    proc = subprocess.run([str(BIN / "mlflow"), "run", ".", "-e", "main", "--env-manager", "local"], cwd=other,
                          capture_output=True, text=True, env={**ENV, **env}, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    committed = lambda rel: run(repo, "git", "show", f"HEAD:{rel}").stdout  # noqa: E731 - the repro's, not an exp's
    assert (other / "dvc.lock").read_text() == committed("dvc.lock")
    for f in ("render/eval/metrics.json", "vec2face/train.json"):
        assert (other / "metrics" / f).read_text() == committed(f"metrics/{f}")
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("dvc-tests")
    runs = client.search_runs([exp.experiment_id], max_results=500)
    outer = [r for r in runs if "facefoundry.stage" not in r.data.tags]
    assert len(outer) == 1  # the `mlflow run` run: every stage run hangs under it, none merged into it
    stages = [r for r in runs if "facefoundry.stage" in r.data.tags]
    assert len(stages) >= 9 and all(r.data.tags["mlflow.parentRunId"] == outer[0].info.run_id for r in stages)
