"""The repository's own dvc.yaml, driven by real `dvc` and `git` in a temp repo on tiny params:
reproducible dvc.lock and metrics, comparable experiments, grouped MLflow runs, the registry."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from facefoundry.config import deep_merge
from tests.generators.vec2face import TINY_VEC2FACE

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "FACEFOUNDRY_"))}
ENV.update(
    PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    GIT_PYTHON_REFRESH="quiet",
    GIT_AUTHOR_NAME="t",
    GIT_AUTHOR_EMAIL="t@t",
    GIT_COMMITTER_NAME="t",
    GIT_COMMITTER_EMAIL="t@t",
)

TINY = {
    "base": {"image_size": 32, "seed": 7, "experiment": "dvc-tests"},
    "generate": {
        "identities": 6,
        "images_per_identity": 4,
        "batch_size": 32,
        "render": {"mesh_lat": 20, "mesh_lon": 28, "supersample": 1},
        "vec2face": {"attrop": {"enabled": False}, "judge_images": 0, "grid_identities": 2},
    },
    "benchmark": {"pairs": 40},
    "vec2face": {
        **TINY_VEC2FACE,
        "epochs": 1,
        "warmup_epochs": 0,
        "threads": 1,
    },
    "identity": {"judge_max_images": 16},
    "train": {
        "backbone": {"name": "iresnet", "layers": [1, 1, 1, 1], "width": 8, "embedding_size": 32},
        "head": {"name": "arcface", "s": 16.0},
        "epochs": 2,
        "batch_size": 8,
        "lr": 0.1,
        "warmup_epochs": 0,
        "log_every": 1000,
        "export_onnx": True,
        "threads": 1,
    },
    "evaluate": {"batch_size": 64, "far_targets": [0.1]},
    "fuse": {"identities": 6},
}


def run(cwd: Path, *cmd: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, env=ENV, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} → {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def dvc(cwd: Path, *args: str, **kw) -> subprocess.CompletedProcess:
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


MLFLOW_PROJECT_ENV = {"MLFLOW_EXPERIMENT_NAME": "dvc-tests"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The repository with tiny params, reproduced through the MLproject's main entry point (`mlflow run`,
    which runs `dvc repro`), its dvc.lock and metrics committed: what a fresh clone must reproduce."""
    r = make_repo(tmp_path_factory.mktemp("dvcrepo"))
    proc = subprocess.run(
        [str(BIN / "mlflow"), "run", ".", "-e", "main", "--env-manager", "local"],
        cwd=r,
        capture_output=True,
        text=True,
        timeout=900,
        env={**ENV, **MLFLOW_PROJECT_ENV, "MLFLOW_TRACKING_URI": f"sqlite:///{r}/mlflow.db"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    run(r, "git", "add", "-A")
    run(r, "git", "commit", "-qm", "repro")
    return r


STAGES = (
    "generate",
    "benchmark",
    "train-vec2face",
    "generate-vec2face",
    "fuse",
    *(f"{stage}@{recipe}" for stage in ("validate", "train", "evaluate") for recipe in ("render", "vec2face", "fused")),
    "report",
)


def ran(proc: subprocess.CompletedProcess) -> list[str]:
    """The stages a `dvc repro` ran (DVC prints "Running stage 'x':" for each)."""
    return re.findall(r"Running stage '([^']+)'", proc.stdout + proc.stderr)


@pytest.fixture(scope="module")
def fresh(repo, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A new user's first command: a clone of the committed repository (no outputs, no DVC cache, no MLflow
    store), then `dvc repro`."""
    clone = tmp_path_factory.mktemp("fresh") / "clone"
    run(repo.parent, "git", "clone", "-q", str(repo), str(clone))
    return clone, dvc(clone, "repro")


def test_first_command_reruns_every_stage_and_leaves_git_clean(fresh):
    clone, proc = fresh
    assert sorted(ran(proc)) == sorted(STAGES)  # every product is a DVC output, so nothing is "already done"
    status = run(clone, "git", "status", "--porcelain").stdout
    assert status == "", f"the fresh repro changed tracked files:\n{status}\n" + run(clone, "git", "diff").stdout[:3000]
    # metrics live where git tracks them; no run id or timing in any DVC metrics file or model folder
    for recipe in ("render", "vec2face", "fused"):
        assert 0 <= json.loads((clone / f"metrics/{recipe}/eval/metrics.json").read_text())["twins_accuracy"] <= 1
        assert set(json.loads((clone / f"metrics/{recipe}/train.json").read_text())) == {
            "epochs",
            "loss",
            "train_accuracy",
        }
        assert (clone / f"metrics/{recipe}/eval/roc.png").read_bytes()[:4] == b"\x89PNG"
    assert "mlflow_run_id" not in (clone / "outputs/train/render/model/facefoundry_model.json").read_text()
    # what a person looks at, as files
    assert (clone / "outputs/report/leaderboard.md").read_text().count("| render |") == 1
    assert (clone / "outputs/report/leaderboard.png").read_bytes()[:4] == b"\x89PNG"
    for folder, names in {
        "outputs/validate/fused": {"gates.json", "problems.json", "samples/grid.png"},
        "outputs/eval/vec2face": {"results.md", "plots/hist_twins.png"},
        "outputs/train/render/plots": {"plots/training.png", "samples/train_grid.png"},
        "outputs/samples/render": {"samples/grid.png"},
        "outputs/vec2face/plots": set(),
        "outputs/samples/vec2face": {"samples/grid.png"},
        "outputs/samples/fused": set(),
    }.items():
        have = {p.relative_to(clone / folder).as_posix() for p in (clone / folder).rglob("*") if p.is_file()}
        assert have and names <= have, (folder, have)


def first_command_runs(clone: Path):
    """(client, the `dvc repro` pipeline parent run, its stage runs) in the clone's MLflow store; runs of later
    experiments (the README's `dvc exp run`) hang under parents of their own."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{clone}/mlflow.db")
    exp = client.get_experiment_by_name("dvc-tests")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    [parent] = [
        r
        for r in runs
        if r.data.tags.get("facefoundry.role") == "pipeline" and "facefoundry.dvc_exp" not in r.data.tags
    ]
    return client, parent, [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


def test_first_command_tracks_every_recipe_in_mlflow(fresh):
    clone, _ = fresh
    client, _parent, children = first_command_runs(clone)
    assert len(children) == len(STAGES) and all(r.info.status == "FINISHED" for r in children)

    def stage(name: str, recipe: str):
        key = "facefoundry.dataset" if name == "validate" else "facefoundry.recipe"
        found = [
            r
            for r in children
            if r.data.tags["facefoundry.stage"] == name and Path(r.data.tags.get(key, "")).name == recipe
        ]
        assert len(found) == 1, (name, recipe, [r.data.tags for r in found])
        return found[0]

    for recipe in ("render", "vec2face", "fused"):
        validate, train, evaluate = stage("validate", recipe), stage("train", recipe), stage("evaluate", recipe)
        assert validate.data.metrics["data/identities"] > 0 and "data/judge_dlib_intra_mean" in validate.data.metrics
        assert validate.data.tags["facefoundry.quality_gates"] == "passed"
        # judge ≠ teacher: the dlib-trained Vec2Face and the fusion that holds it are judged by SFace
        judge = {"render": "dlib", "vec2face": "sface", "fused": "sface"}[recipe]
        assert validate.data.tags["data.judge"] == judge and f"data/judge_{judge}_intra_mean" in validate.data.metrics
        quality = {a.path for a in client.list_artifacts(validate.info.run_id, "quality")}
        assert {"quality/gx_results.json", "quality/gates.json", "quality/problems.json"} <= quality
        accuracy = evaluate.data.metrics["twins/accuracy"]
        assert 0 <= accuracy <= 1 and "twins/auc" in evaluate.data.metrics
        assert train.data.metrics["twins/accuracy"] == accuracy  # the training run carries it too, for sorting
        version = client.get_model_version_by_alias("facefoundry-fr", recipe)
        assert version.run_id == train.info.run_id and float(version.tags["twins/accuracy"]) == pytest.approx(accuracy)
    report = next(r for r in children if r.data.tags["facefoundry.stage"] == "report")
    assert {"leaderboard.md", "leaderboard.png", "roc_twins.png"} <= {
        a.path for a in client.list_artifacts(report.info.run_id)
    }


def test_second_repro_and_stage_commands_alone_change_nothing(fresh):
    clone, _ = fresh
    again = dvc(clone, "repro")
    assert ran(again) == [] and "didn't change, skipping" in again.stdout + again.stderr
    # each stage command typed alone acts on the default (render) recipe: same files, nothing to rerun
    for cmd in (["validate"], ["train"], ["evaluate"], ["report"]):
        proc = run(clone, str(BIN / "facefoundry"), *cmd)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert "up to date" in run(clone, str(BIN / "facefoundry"), "train").stderr  # no second training
    assert ran(dvc(clone, "repro")) == []
    assert run(clone, "git", "status", "--porcelain").stdout == ""


def readme_block(heading: str) -> list[str]:
    """The commands of the ```bash block under ``### heading`` in README.md, one per line, as written."""
    text = (ROOT / "README.md").read_text()
    block = re.search(rf"^### {heading}\n.*?```bash\n(.*?)```", text, re.S | re.M)
    assert block, f"README.md has no ```bash block under ### {heading}"
    return [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_readme_reproduce_and_compare_commands_work_as_written(fresh):
    clone, _ = fresh
    lines = readme_block("Reproduce") + readme_block("Compare")
    skipped = [ln for ln in lines if ln.startswith(("source ", "mlflow ui"))]  # the venv is ours; a server blocks
    assert len(skipped) == 2, skipped
    for line in lines:
        if line in skipped:
            continue
        proc = run(clone, "bash", "-c", line)
        assert proc.stdout.strip(), f"{line!r} printed nothing"
    # the compare block's experiment is a DVC experiment with its own accuracies
    show = json.loads(dvc(clone, "exp", "show", "--json").stdout)
    found = {
        rev["name"]: (rev.get("data") or {})
        .get("metrics", {})
        .get("metrics/render/eval/metrics.json", {})
        .get("data", {})
        .get("twins_accuracy")
        for baseline in show
        for exp in baseline.get("experiments") or []
        for rev in exp.get("revs", [])
        if rev.get("name")
    }
    assert isinstance(found.get("lr-0.05"), float), found
    assert "roc_twins.json" in dvc(clone, "plots", "diff", "HEAD", "lr-0.05", "--json").stdout


def test_mlflow_runs_carry_names_datasets_and_models(fresh):
    clone, _ = fresh
    client, parent, children = first_command_runs(clone)
    runs = [r for r in children if r.data.tags["facefoundry.stage"] == "train"]
    assert len(runs) == 3 and all(r.info.run_name.startswith("train · ") for r in runs)
    assert {r.data.params["data.generator"] for r in runs} == {"render", "vec2face", "fusion"}
    for train in runs:
        inputs = train.inputs.dataset_inputs
        assert inputs and inputs[0].dataset.digest and inputs[0].dataset.name in ("render", "vec2face", "fused")
    logged = client.search_logged_models(experiment_ids=[parent.info.experiment_id])
    assert {m.name for m in logged} == {"model", "model_onnx"}


def test_mlflow_project_main_is_dvc_repro(repo, fresh):
    """`mlflow run . -e main` made the committed dvc.lock and metrics that the fresh clone's `dvc repro`
    reproduced (its git status stays clean: test above); every stage run hangs under the project's run."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo}/mlflow.db")
    exp = client.get_experiment_by_name("dvc-tests")
    runs = client.search_runs([exp.experiment_id], max_results=500)
    outer = [r for r in runs if "facefoundry.stage" not in r.data.tags]
    assert len(outer) == 1  # the `mlflow run` run: every stage run hangs under it, none merged into it
    stages = [r for r in runs if "facefoundry.stage" in r.data.tags]
    tags = [r.data.tags["facefoundry.stage"] for r in stages]  # generate-vec2face is a `generate` run
    assert {t: tags.count(t) for t in set(tags)} == {
        "generate": 2,
        "benchmark": 1,
        "train-vec2face": 1,
        "fuse": 1,
        "validate": 3,
        "train": 3,
        "evaluate": 3,
        "report": 1,
    }
    assert all(r.data.tags["mlflow.parentRunId"] == outer[0].info.run_id for r in stages)
    assert not [r for r in runs if r.info.status == "RUNNING"]
