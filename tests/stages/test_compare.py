"""`facefoundry compare`: recipes × FR seeds as stage runs under one MLflow parent, resumable, with the
statistics, the table and a self-contained page."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facefoundry.config import load_config
from facefoundry.stages.compare import run_compare
from facefoundry.tracking.parent import PIPELINE_ENV, PIPELINE_NAME_ENV
from facefoundry.verification.binfile import write_bin
from tests.conftest import identity_image, make_dataset, tiny_config

pytestmark = pytest.mark.slow


def _benchmark(path: Path, pairs: int = 40) -> Path:
    """Pairs of held-out identities (labels 100+): half the same identity, half different."""
    rng = np.random.default_rng(5)
    images, same = [], []
    for k in range(pairs):
        a = 100 + k % 10
        b = a if k % 2 == 0 else 100 + (k + 3) % 10
        images += [identity_image(a, 0, 32, rng), identity_image(b, 1, 32, rng)]
        same.append(a == b)
    write_bin(path, images, same)
    return path


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    small = make_dataset(tmp / "small", identities=6, per_identity=4)
    large = make_dataset(tmp / "large", identities=10, per_identity=6, seed=1)
    # knowledge distillation on the large set, as an experiment file (a teacher that is cheap: raw pixels)
    distilled = tmp / "distilled.yaml"
    distilled.write_text("train:\n  objective: distill\n  teacher: pixels\n")  # a dataset under these settings
    cfg = tiny_config(
        tmp,
        compare={
            "recipes": {"small": str(small), "large": str(large), "distilled": [str(large), str(distilled)]},
            "baseline": "small",
            "seeds": [1, 2],
            "out": str(tmp / "cmp"),
            "claims": [{"recipe": "large", "against": "small", "expect": "higher", "source": "more data"}],
        },
    )
    _benchmark(tmp / "twins.bin")  # tiny_config's benchmark: held-out identities
    params = tmp / "params.yaml"

    def load(experiments, sets):
        return load_config(params, experiments, sets)

    saved = {k: os.environ.get(k) for k in (PIPELINE_ENV, PIPELINE_NAME_ENV)}
    try:
        first = run_compare(cfg, load)
        again = run_compare(cfg, load)  # everything done: resumes without training
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return tmp, cfg, first, again


def test_summary_over_seeds_and_against_the_baseline(compared):
    tmp, _, result, again = compared
    assert result["baseline"] == "small" and set(result["recipes"]) == {"small", "large", "distilled"}
    assert result["regimes"] == {"small": "labels", "large": "labels", "distilled": "distill:pixels"}
    assert result["datasets"]["distilled"] == result["datasets"]["large"] == str(tmp / "large")
    large = result["recipes"]["large"]
    assert large["seeds"] == [1, 2]
    acc = large["scores"]["twins_accuracy"]
    per_seed = [large["per_seed"][s]["twins_accuracy"] for s in ("1", "2")]
    assert acc["n"] == 2 and acc["mean"] == pytest.approx(np.mean(per_seed))
    assert acc["ci_low"] <= acc["mean"] <= acc["ci_high"]
    test = large["versus_baseline"]["twins_accuracy"]
    assert test["welch"]["test"] == "welch" and test["paired"]["test"] == "paired"  # seeds 1 and 2 are shared
    assert "versus_baseline" not in result["recipes"]["small"]
    assert again["recipes"]["large"]["per_seed"] == large["per_seed"]  # the resumed call read the same runs


def test_table_and_self_contained_page(compared):
    tmp, *_ = compared
    table = (tmp / "cmp" / "compare" / "compare.md").read_text()
    assert "### twins" in table and "| large | labels | 2 |" in table and "Δ vs small" in table
    assert "| distilled | distill:pixels | 2 |" in table  # a distilled recipe is never ranked without saying so
    page = (tmp / "cmp" / "compare" / "compare.html").read_text()
    assert page.count("data:image/png;base64,") >= 3  # the ROC overlay and both datasets' grids
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "### claims" in table and "| large vs small (more data) | higher | twins |" in table
    assert "<h2>Claims</h2>" in page


def test_claims_are_judged_on_every_benchmark(compared):
    _, _, result, _ = compared
    [claim] = result["claims"]
    large, small = (result["recipes"][r]["scores"]["twins_accuracy"]["mean"] for r in ("large", "small"))
    assert claim["benchmark"] == "twins" and claim["difference"] == pytest.approx(large - small)
    assert claim["verdict"] in {"holds", "reversed", "not shown", "untested (one seed, or no spread)"}


def test_stage_runs_under_one_parent_and_resume_adds_none(compared):
    import mlflow

    _, cfg, *_ = compared
    client = mlflow.MlflowClient(tracking_uri=cfg.base.tracking_uri)
    exp = client.get_experiment_by_name(cfg.base.experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("facefoundry.role") == "pipeline"]
    assert len(parents) == 1 and parents[0].data.tags.get("facefoundry.compare") == "compare"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    stages = sorted(r.data.tags["facefoundry.stage"] for r in children)
    assert stages == ["evaluate"] * 6 + ["train"] * 6  # 3 recipes × 2 seeds, once: the second call trained nothing
    distilled = [r for r in children if r.data.tags.get("facefoundry.regime") == "distill:pixels"]
    assert len(distilled) == 2 and all(r.data.tags["facefoundry.stage"] == "train" for r in distilled)
    assert all("train/teacher_cosine" in r.data.metrics and "train/accuracy" not in r.data.metrics for r in distilled)
    assert {r.data.params["train.objective"] for r in distilled} == {"distill"}
    logged = {a.path for a in client.list_artifacts(parents[0].info.run_id, "compare")}
    assert {"compare/summary.json", "compare/compare.md", "compare/compare.html"} <= logged
    assert "large/twins_accuracy_mean" in parents[0].data.metrics


def test_bad_recipes_are_one_line_errors(tmp_path):
    tiny_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    for args, fragment in [
        (["--recipe", "nameonly"], "--recipe nameonly: expected NAME="),
        (["--recipe", f"x={tmp_path / 'missing'}"], "compare.recipes.x:"),
        ([], "compare.recipes is empty"),
        (["--recipe", f"a={tmp_path},{tmp_path}"], "give one dataset folder, experiment files, or both"),
        (["--recipe", f"a={tmp_path},{tmp_path / 'x.yaml'}"], "x.yaml: experiment file not found"),
        (["--recipe", f"a={tmp_path}", "--claim", "a=b"], "--claim a=b: expected RECIPE>OTHER"),
        (["--recipe", f"a={tmp_path}", "--claim", "a>b"], "compare.claims[0].against: 'b' is not one of"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "facefoundry", "--params", str(tmp_path / "params.yaml"), "compare", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert fragment in proc.stderr, proc.stderr


def test_recipe_flags_replace_the_recipes_of_the_parameter_file(tmp_path):
    import yaml

    tiny_config(tmp_path, compare={"recipes": {"x": str(tmp_path / "gone")}})
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "facefoundry",
            "--params",
            str(tmp_path / "params.yaml"),
            "compare",
            "--recipe",
            f"a={tmp_path / 'missing'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2 and "compare.recipes.a:" in proc.stderr and "compare.recipes.x" not in proc.stderr
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["compare"]["recipes"] == {"x": str(tmp_path / "gone")}
